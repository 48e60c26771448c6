//! The two layouts of an input Jacobian and what each axis means.

use std::fmt;

/// How the Jacobian of a batched function `y = f(x)`, `x: [B, input dims...]`,
/// `y: [B, O]`, is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[B, O, B, input dims...]`: entry `[b, k, b', ...]` is `d y[b, k] / d x[b', ...]`.
    ///
    /// This is what `torch.autograd.functional.jacobian(f, x)` returns: the output's shape
    /// followed by the whole input's shape, so the batch size appears twice.
    Full,
    /// `[B, O, input dims...]`: entry `[b, k, ...]` is `d y[b, k] / d x[b, ...]`.
    ///
    /// The batch diagonal of [`Layout::Full`], `torch.einsum("bibj->bij", full)`: when samples
    /// are independent every block with `b != b'` is zero and this keeps all the information.
    PerSample,
}

impl Layout {
    /// The shape of this layout for a batch of `batch` samples, `outputs` outputs per sample
    /// and `input_dims` per sample (the input's shape without its batch axis).
    pub fn shape(self, batch: usize, outputs: usize, input_dims: &[usize]) -> Vec<usize> {
        let mut shape = vec![batch, outputs];
        if self == Layout::Full {
            shape.push(batch);
        }
        shape.extend_from_slice(input_dims);
        shape
    }

    /// How many `f32` entries this layout has.
    pub fn len(self, batch: usize, outputs: usize, input_dims: &[usize]) -> u128 {
        self.shape(batch, outputs, input_dims)
            .iter()
            .map(|&d| d as u128)
            .product()
    }

    /// Bytes of this layout in `f32`, computed without overflow so that sizes too large for
    /// memory can be refused before anything is allocated.
    pub fn bytes(self, batch: usize, outputs: usize, input_dims: &[usize]) -> u128 {
        self.len(batch, outputs, input_dims) * std::mem::size_of::<f32>() as u128
    }

    /// Every axis of this layout: its index, size and meaning.
    ///
    /// `input_axis_names` names the input's axes after the batch axis (for images,
    /// `["channel", "row", "column"]`); missing names become `input axis i`.
    pub fn axes(
        self,
        batch: usize,
        outputs: usize,
        input_dims: &[usize],
        input_axis_names: &[&str],
    ) -> Vec<Axis> {
        let mut axes = vec![
            Axis::new(batch, "sample b of the output batch: the b of d y[b, k]"),
            Axis::new(
                outputs,
                "output k of that sample (a logit): the k of d y[b, k]",
            ),
        ];
        if self == Layout::Full {
            axes.push(Axis::new(
                batch,
                "sample b' of the input batch: the b' of d / d x[b', ...]; \
                 zero unless b' = b when samples are independent",
            ));
        }
        for (i, &size) in input_dims.iter().enumerate() {
            let name = input_axis_names
                .get(i)
                .map(|name| name.to_string())
                .unwrap_or_else(|| format!("input axis {}", i + 1));
            axes.push(Axis::new(
                size,
                &format!("{name} of the input pixel/feature"),
            ));
        }
        for (index, axis) in axes.iter_mut().enumerate() {
            axis.index = index;
        }
        axes
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Full => "full",
            Layout::PerSample => "per-sample",
        })
    }
}

/// One axis of a Jacobian layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Axis {
    /// Position in the shape.
    pub index: usize,
    /// Length.
    pub size: usize,
    /// What moving along it means.
    pub meaning: String,
}

impl Axis {
    fn new(size: usize, meaning: &str) -> Self {
        Axis {
            index: 0,
            size,
            meaning: meaning.to_string(),
        }
    }
}

/// Shape written the way Python prints it: `(12, 10, 12, 1, 32, 32)`.
pub fn python_shape(shape: &[usize]) -> String {
    let items: Vec<String> = shape.iter().map(usize::to_string).collect();
    if items.len() == 1 {
        format!("({},)", items[0])
    } else {
        format!("({})", items.join(", "))
    }
}
