//! The CellPredX network (METHOD.md, "Network"): a linear encoder shared by reference and query,
//! an attention network that weighs each embedding dimension for the sparse center loss, and a
//! linear classifier. The sub-path names ("encoder", "attention", "classifier") are the names
//! under which weights are saved, so they are part of the model file format.

use crate::error::Result;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Sizes of what a model file holds: the network's layers and the reference sample kept for
/// the open-set score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkShape {
    pub input_dim: i64,
    pub embedding_dim: i64,
    /// Width of the attention network's context unit.
    pub context_dim: i64,
    pub n_classes: i64,
    /// Reference cells whose embeddings are kept (`open_set::reference_sample_rows`).
    pub reference_cells: i64,
}

/// The largest embedding and context widths a model file may declare: far above any trained
/// model (64), and small enough that a forged description cannot make the loader allocate much.
pub const MAX_LAYER_WIDTH: i64 = 4096;

impl NetworkShape {
    /// The numbers a network of this shape keeps in a model file (its variables: the layers'
    /// weights and biases, the attention's batch-norm statistics, the prototypes and the
    /// reference sample), so that a file's size can be checked before anything is allocated.
    /// `None` when the count overflows.
    pub fn stored_values(&self) -> Option<i64> {
        let NetworkShape { input_dim, embedding_dim: e, context_dim: c, n_classes: k, reference_cells: r } = *self;
        let linear = |inputs: i64, outputs: i64| inputs.checked_add(1)?.checked_mul(outputs);
        [
            linear(input_dim, e)?,
            linear(e, c)?,
            c.checked_mul(4)?,
            linear(c, e.checked_mul(2)?)?,
            linear(e, k)?,
            k.checked_mul(e)?,
            r.checked_mul(e)?,
        ]
        .into_iter()
        .try_fold(0i64, i64::checked_add)
    }

    /// The default layer sizes for `input_dim` features and `n_classes` types, with no reference
    /// sample (training sets it).
    pub fn new(input_dim: i64, n_classes: i64) -> Self {
        NetworkShape { input_dim, embedding_dim: 64, context_dim: 64, n_classes, reference_cells: 0 }
    }
}

#[derive(Debug)]
pub struct CellPredXNet {
    pub shape: NetworkShape,
    encoder: nn::Linear,
    context: nn::Linear,
    context_norm: nn::BatchNorm,
    heads: nn::Linear,
    classifier: nn::Linear,
}

/// What one forward pass gives: embeddings and class logits.
pub struct Forward {
    pub embedding: Tensor,
    pub logits: Tensor,
}

impl CellPredXNet {
    pub fn new(p: &nn::Path, shape: NetworkShape) -> Self {
        let attention = p / "attention";
        CellPredXNet {
            shape,
            encoder: nn::linear(p / "encoder", shape.input_dim, shape.embedding_dim, Default::default()),
            context: nn::linear(&attention / "context", shape.embedding_dim, shape.context_dim, Default::default()),
            context_norm: nn::batch_norm1d(&attention / "norm", shape.context_dim, Default::default()),
            heads: nn::linear(&attention / "heads", shape.context_dim, 2 * shape.embedding_dim, Default::default()),
            classifier: nn::linear(p / "classifier", shape.embedding_dim, shape.n_classes, Default::default()),
        }
    }

    /// The embedding `f(x)` of a cells × features batch.
    pub fn embed(&self, x: &Tensor) -> Tensor {
        self.encoder.forward_t(x, false)
    }

    /// The encoder's weight (embedding_dim × input_dim) and bias, for computing its first layer
    /// outside libtorch on sparse input.
    pub fn encoder_parameters(&self) -> (&Tensor, Option<&Tensor>) {
        (&self.encoder.ws, self.encoder.bs.as_ref())
    }

    /// Class logits `c(z)` of embeddings.
    pub fn classify(&self, embedding: &Tensor) -> Tensor {
        self.classifier.forward_t(embedding, false)
    }

    pub fn forward(&self, x: &Tensor) -> Forward {
        let embedding = self.embed(x);
        let logits = self.classify(&embedding);
        Forward { embedding, logits }
    }

    /// For each embedding dimension j, the probability `a_j` of "include" from a softmax over the
    /// pair of (include, exclude) scores its binary head gives. Shape: cells × embedding_dim.
    pub fn attention(&self, embedding: &Tensor, train: bool) -> Result<Tensor> {
        let context = self.context_norm.forward_t(&self.context.forward_t(embedding, train), train).tanh();
        let scores = self.heads.forward_t(&context, train);
        let pairs = scores.f_view([-1, self.shape.embedding_dim, 2])?;
        Ok(pairs.f_softmax(-1, tch::Kind::Float)?.f_select(2, 0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind};

    fn net() -> (VarStore, CellPredXNet) {
        crate::train::seeded(0, || {
            let vs = VarStore::new(Device::Cpu);
            let net = CellPredXNet::new(&vs.root(), NetworkShape::new(30, 4));
            (vs, net)
        })
    }

    #[test]
    fn shapes_follow_the_method() {
        let (vs, net) = net();
        let x = crate::train::seeded(1, || Tensor::randn([8, 30], (Kind::Float, Device::Cpu)));
        let out = net.forward(&x);
        assert_eq!(out.embedding.size(), vec![8, 64]);
        assert_eq!(out.logits.size(), vec![8, 4]);
        let a = net.attention(&out.embedding, true).unwrap();
        assert_eq!(a.size(), vec![8, 64]);
        assert!(a.min().double_value(&[]) > 0.0 && a.max().double_value(&[]) < 1.0);
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "attention.context.bias", "attention.context.weight", "attention.heads.bias",
                "attention.heads.weight", "attention.norm.bias", "attention.norm.running_mean",
                "attention.norm.running_var", "attention.norm.weight", "classifier.bias",
                "classifier.weight", "encoder.bias", "encoder.weight"
            ]
        );
    }

    #[test]
    fn stored_values_count_every_variable_of_the_network() {
        let shape = NetworkShape { input_dim: 30, embedding_dim: 16, context_dim: 8, n_classes: 4, reference_cells: 7 };
        let vs = VarStore::new(Device::Cpu);
        let _net = CellPredXNet::new(&vs.root(), shape);
        let _summary = crate::train::summary_variables(&vs, shape).unwrap();
        let counted: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
        assert_eq!(shape.stored_values(), Some(counted));
        let huge = NetworkShape { input_dim: i64::MAX, ..shape };
        assert_eq!(huge.stored_values(), None);
    }

    #[test]
    fn attention_is_the_include_probability_of_each_pair() {
        let (_vs, net) = net();
        let z = crate::train::seeded(2, || Tensor::randn([5, 64], (Kind::Float, Device::Cpu)));
        let a = net.attention(&z, false).unwrap();
        let context = net.context_norm.forward_t(&net.context.forward_t(&z, false), false).tanh();
        let scores = net.heads.forward_t(&context, false).view([5, 64, 2]);
        let include = scores.select(2, 0);
        let exclude = scores.select(2, 1);
        let expected = (include - exclude).sigmoid();
        assert!(a.allclose(&expected, 1e-5, 1e-6, false));
    }
}
