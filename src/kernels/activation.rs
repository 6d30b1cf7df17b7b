//! Activation functions: ids shared with `shaders/lib/activations.wgsl`, and the f64 references.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Identity = 0,
    Relu = 1,
    /// GELU in its tanh form (WGSL has no erf).
    Gelu = 2,
    Silu = 3,
    Elu = 4,
    Tanh = 5,
}

const GELU_C: f64 = 0.797_884_560_802_865_4;
const GELU_A: f64 = 0.044715;

impl Activation {
    pub const ALL: [Activation; 6] = [
        Activation::Identity,
        Activation::Relu,
        Activation::Gelu,
        Activation::Silu,
        Activation::Elu,
        Activation::Tanh,
    ];

    /// The id the shaders switch on.
    pub fn id(self) -> f64 {
        self as u32 as f64
    }

    pub fn f(self, x: f64) -> f64 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
            Activation::Gelu => 0.5 * x * (1.0 + (GELU_C * (x + GELU_A * x * x * x)).tanh()),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Elu => {
                if x > 0.0 {
                    x
                } else {
                    x.exp() - 1.0
                }
            }
            Activation::Tanh => x.tanh(),
        }
    }

    /// Derivative at pre-activation `x`.
    pub fn df(self, x: f64) -> f64 {
        match self {
            Activation::Identity => 1.0,
            Activation::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Gelu => {
                let u = GELU_C * (x + GELU_A * x * x * x);
                let t = u.tanh();
                let du = GELU_C * (1.0 + 3.0 * GELU_A * x * x);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
            }
            Activation::Silu => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 + x * (1.0 - s))
            }
            Activation::Elu => {
                if x > 0.0 {
                    1.0
                } else {
                    x.exp()
                }
            }
            Activation::Tanh => 1.0 - x.tanh().powi(2),
        }
    }
}
