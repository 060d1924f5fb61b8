"""ImageNet route (needs internet for the weights): torchvision vgg16(IMAGENET1K_V1).features -> ONNX trunk.

Same contract as the offline trunk: input `input` [N,3,224,224] (dynamic N) -> `features` [N,25088], the
features flattened in NCHW order after the last maxpool. torchvision expects RGB/255 normalised with the
ImageNet mean/std; that and the provenance go into the metadata.

usage: python models/export_torchvision_vgg16.py OUT.onnx [--random-weights]
(--random-weights needs no internet: for speed tests only, its features are meaningless)
"""
import argparse

import onnx
import torch
import torchvision

from vgg16_onnx import TORCHVISION_RGB, set_metadata


class Trunk(torch.nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features = features

    def forward(self, x):
        return torch.flatten(self.features(x), 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--random-weights", action="store_true")
    a = ap.parse_args()
    weights = None if a.random_weights else torchvision.models.VGG16_Weights.IMAGENET1K_V1
    vgg = torchvision.models.vgg16(weights=weights).eval()
    x = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(Trunk(vgg.features), x, a.out, input_names=["input"], output_names=["features"],
                      dynamic_axes={"input": {0: "N"}, "features": {0: "N"}}, opset_version=17, dynamo=False)
    m = onnx.load(a.out)
    prov = ("random weights (speed tests only)" if a.random_weights
            else "torchvision vgg16 IMAGENET1K_V1 .features (ImageNet classification weights)")
    set_metadata(m, TORCHVISION_RGB, prov, "torchvision-random" if a.random_weights else "torchvision-imagenet")
    onnx.save(m, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
