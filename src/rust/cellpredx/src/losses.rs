//! The five CellPredX losses (METHOD.md, "Losses"), each a pure function of tensors. Shapes are
//! checked up front and named in the error, so a wrong call fails with the dimensions rather
//! than a libtorch message.

use crate::error::{CellPredXError, Result};
use crate::rng::SplitMix64;
use tch::{Kind, Reduction, Tensor};

fn check_rank2(t: &Tensor, what: &str) -> Result<(i64, i64)> {
    match t.size().as_slice() {
        [rows, cols] => Ok((*rows, *cols)),
        other => Err(CellPredXError::invalid(format!("{what} must be a matrix, has shape {other:?}"))),
    }
}

fn check_rows(t: &Tensor, rows: i64, what: &str) -> Result<()> {
    let got = t.size()[0];
    if got != rows {
        return Err(CellPredXError::DimensionMismatch { what: format!("rows of {what}"), expected: rows as usize, got: got as usize });
    }
    Ok(())
}

/// CE: mean cross-entropy of class logits (cells × classes) against integer labels.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (cells, _) = check_rank2(logits, "logits")?;
    check_rows(labels, cells, "labels")?;
    Ok(logits.f_cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)?)
}

/// Centering and decorrelation of one batch of embeddings: mean |z| plus the mean absolute
/// off-diagonal (upper triangle) entry of the embedding dimensions' covariance.
fn centering_decorrelation(z: &Tensor) -> Result<Tensor> {
    let (cells, dims) = check_rank2(z, "embedding")?;
    let centred = z.f_sub(&z.f_mean_dim(0, true, None::<Kind>)?)?;
    let covariance = centred.f_tr()?.f_mm(&centred)?.f_div_scalar((cells - 1).max(1) as f64)?;
    let pairs = (dims * (dims - 1) / 2).max(1) as f64;
    let off_diagonal = covariance.f_triu(1)?.f_abs()?.f_sum(None::<Kind>)?.f_div_scalar(pairs)?;
    Ok(z.f_abs()?.f_mean(None::<Kind>)?.f_add(&off_diagonal)?)
}

/// PR: centering + decorrelation of both sides, plus 1 / mean |zB − column mean| for the query,
/// which keeps its embedding from collapsing to a point.
pub fn projection_regularization(z_ref: &Tensor, z_query: &Tensor) -> Result<Tensor> {
    let spread = z_query.f_sub(&z_query.f_mean_dim(0, true, None::<Kind>)?)?.f_abs()?.f_mean(None::<Kind>)?;
    let keep_variance = spread.f_reciprocal()?;
    Ok(centering_decorrelation(z_ref)?.f_add(&centering_decorrelation(z_query)?)?.f_add(&keep_variance)?)
}

/// L1: the sum over weight tensors of their mean absolute value.
pub fn l1_penalty<'a>(weights: impl IntoIterator<Item = &'a Tensor>) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for w in weights {
        let mean = w.f_abs()?.f_mean(None::<Kind>)?;
        total = Some(match total {
            Some(t) => t.f_add(&mean)?,
            None => mean,
        });
    }
    Ok(total.unwrap_or_else(|| Tensor::from(0f32)))
}

/// Each row divided by its L2 norm (zero rows stay zero).
pub(crate) fn unit_rows(z: &Tensor) -> Result<Tensor> {
    let norms = z.f_norm_scalaropt_dim(2, [1], true)?.f_clamp_min(1e-12)?;
    Ok(z.f_div(&norms)?)
}

/// FA: pulls each query cell toward its most similar reference cell. The match is chosen without
/// gradient; only the `keep` fraction of query cells with the best matches count.
/// With a `hinge` generator, also pushes reference cells away from random query cells drawn from
/// it: mean relu(cos(ẑA[i*], ẑB[random]) + 0.5), the authors' extra term. The draws come from the
/// training's own generator, not libtorch's global one, so that networks trained at the same time
/// in other threads cannot change what a seed gives.
pub fn feature_alignment(z_ref: &Tensor, z_query: &Tensor, keep: f64, hinge: Option<&mut SplitMix64>) -> Result<Tensor> {
    let (_, dims_ref) = check_rank2(z_ref, "reference embedding")?;
    let (n_query, dims_query) = check_rank2(z_query, "query embedding")?;
    if dims_ref != dims_query {
        return Err(CellPredXError::DimensionMismatch { what: "embedding dimensions".into(), expected: dims_ref as usize, got: dims_query as usize });
    }
    if !(keep > 0.0 && keep <= 1.0) {
        return Err(CellPredXError::invalid(format!("the kept fraction must be in (0, 1], not {keep}")));
    }
    let (a, b) = (unit_rows(z_ref)?, unit_rows(z_query)?);
    let (best_similarity, best_match) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
        Ok(b.f_mm(&a.f_tr()?)?.f_max_dim(1, false)?)
    })?;
    let kept_count = ((n_query as f64 * keep).ceil() as i64).clamp(1, n_query);
    let kept = best_similarity.f_topk(kept_count, 0, true, true)?.1;
    let matched = a.f_index_select(0, &best_match.f_index_select(0, &kept)?)?;
    let cosine = b.f_index_select(0, &kept)?.f_mul(&matched)?.f_sum_dim_intlist(1, false, None::<Kind>)?;
    let mut loss = cosine.f_mean(None::<Kind>)?.f_neg()?;
    if let Some(rng) = hinge {
        let draws: Vec<i64> = (0..kept_count).map(|_| rng.below(n_query as usize) as i64).collect();
        let random = Tensor::from_slice(&draws).f_to_device(b.device())?;
        let negative = matched.f_mul(&b.f_index_select(0, &random)?)?.f_sum_dim_intlist(1, false, None::<Kind>)?;
        loss = loss.f_add(&negative.f_add_scalar(0.5)?.f_relu()?.f_mean(None::<Kind>)?)?;
    }
    Ok(loss)
}

/// CL: symmetric InfoNCE (NT-Xent) between query cells and one sampled neighbour each. Row i of
/// `z_cells` and of `z_neighbours` form a positive pair; the other 2b − 2 embeddings are negatives.
pub fn neighbourhood_contrastive(z_cells: &Tensor, z_neighbours: &Tensor, temperature: f64) -> Result<Tensor> {
    let (b, _) = check_rank2(z_cells, "query embedding")?;
    check_rows(z_neighbours, b, "neighbour embedding")?;
    if temperature <= 0.0 {
        return Err(CellPredXError::invalid(format!("the temperature must be positive, not {temperature}")));
    }
    let z = unit_rows(&Tensor::f_cat(&[z_cells, z_neighbours], 0)?)?;
    let logits = z.f_mm(&z.f_tr()?)?.f_div_scalar(temperature)?;
    // A cell is never its own negative: its self-similarity leaves the softmax. Filled in place
    // (no gradient flows to it), which spares a mask the size of the whole matrix every step.
    let mut self_similarity = logits.f_diagonal(0, 0, 1)?;
    let _ = self_similarity.f_fill_(f64::NEG_INFINITY)?;
    let idx = Tensor::f_arange(b, (Kind::Int64, z.device()))?;
    let positives = Tensor::f_cat(&[idx.f_add_scalar(b)?, idx], 0)?;
    Ok(logits.f_cross_entropy_loss::<Tensor>(&positives, None, Reduction::Mean, -100, 0.0)?)
}

/// How the attention weights enter the sparse center loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CenterWeighting {
    /// The weights as the attention network gives them (can shrink toward 0 together).
    Raw,
    /// Each cell's weights divided by their mean over dimensions: a re-weighting, not a shrinkage.
    MeanOne,
}

fn center_weights(weights: &Tensor, weighting: CenterWeighting) -> Result<Tensor> {
    match weighting {
        CenterWeighting::Raw => Ok(weights.shallow_clone()),
        CenterWeighting::MeanOne => Ok(weights.f_div(&weights.f_mean_dim(1, true, None::<Kind>)?.f_clamp_min(1e-12)?)?),
    }
}

fn check_center_inputs(z: &Tensor, weights: &Tensor, labels: &Tensor, centers: &Tensor) -> Result<()> {
    let (n, dims) = check_rank2(z, "embedding")?;
    check_rows(weights, n, "attention weights")?;
    check_rows(labels, n, "labels")?;
    let (_, center_dims) = check_rank2(centers, "centers")?;
    if weights.size() != z.size() || center_dims != dims {
        return Err(CellPredXError::DimensionMismatch { what: "embedding dimensions of weights and centers".into(), expected: dims as usize, got: center_dims as usize });
    }
    Ok(())
}

/// SCL: 1/(2N) Σ_i Σ_j W_ij (Z_ij − C_{y_i j})², the attention-weighted distance of each cell's
/// embedding to its class center. Centers are constants here; `update_centers` moves them.
pub fn sparse_center(z: &Tensor, weights: &Tensor, labels: &Tensor, centers: &Tensor, weighting: CenterWeighting) -> Result<Tensor> {
    check_center_inputs(z, weights, labels, centers)?;
    let n = z.size()[0].max(1) as f64;
    let own_center = centers.f_index_select(0, labels)?.f_detach()?;
    let squared = z.f_sub(&own_center)?.f_square()?;
    Ok(center_weights(weights, weighting)?.f_mul(&squared)?.f_sum(None::<Kind>)?.f_div_scalar(2.0 * n)?)
}

/// An upper bound on the curvature the sparse center loss gives the encoder: the largest, over
/// embedding dimensions j, of (1/N) Σ_i W_ij ‖x̃_i‖², the trace of that dimension's Hessian
/// (1/N) Σ_i W_ij x̃_i x̃_iᵀ with respect to its encoder row, where x̃_i is cell i's input with a 1
/// for the bias (`input_energy` holds ‖x̃_i‖²). The loss is quadratic in the embedding and the
/// embedding linear in the input, so this curvature grows with the squared input norm: deep
/// libraries with nearly every gene detected, or un-normalised values, make it tens of times
/// larger than typical UMI data. Without gradient.
pub fn center_curvature(weights: &Tensor, weighting: CenterWeighting, input_energy: &Tensor) -> Result<Tensor> {
    let (n, _) = check_rank2(weights, "attention weights")?;
    check_rows(input_energy, n, "input energies")?;
    tch::no_grad(|| {
        let per_dimension = center_weights(weights, weighting)?.f_mul(&input_energy.f_unsqueeze(1)?)?.f_mean_dim(0, false, None::<Kind>)?;
        Ok(per_dimension.f_max()?)
    })
}

/// Moves each class center toward its cells (Wen et al. 2016):
/// C_k ← C_k − α Σ_{i: y_i = k} W_i ⊙ (C_k − Z_i) / (1 + n_k). Returns the new centers.
///
/// The update always takes the attention weights as they are, in (0, 1): then each center moves
/// at most α of the way to its cells' mean and the update is stable. Weights normalised to mean 1
/// can reach the embedding width, and the centers would overshoot and diverge.
pub fn update_centers(z: &Tensor, weights: &Tensor, labels: &Tensor, centers: &Tensor, alpha: f64) -> Result<Tensor> {
    check_center_inputs(z, weights, labels, centers)?;
    tch::no_grad(|| {
        let diff = centers.f_index_select(0, labels)?.f_sub(z)?.f_mul(weights)?;
        let delta = centers.f_zeros_like()?.f_index_add(0, labels, &diff)?;
        let counts = centers.f_new_zeros([centers.size()[0]], (centers.kind(), centers.device()))?
            .f_index_add(0, labels, &labels.f_ones_like()?.f_to_kind(centers.kind())?)?;
        let scale = counts.f_add_scalar(1.0)?.f_unsqueeze(1)?;
        Ok(centers.f_sub(&delta.f_div(&scale)?.f_mul_scalar(alpha)?)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(values: &[f32], rows: i64, cols: i64) -> Tensor {
        Tensor::from_slice(values).view([rows, cols])
    }

    fn value(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    /// Compares autograd's gradient of `loss(x)` with central differences, in double precision.
    fn check_gradient(x: &Tensor, loss: impl Fn(&Tensor) -> Tensor) {
        let x = x.to_kind(Kind::Double).detach().set_requires_grad(true);
        let analytic = {
            let l = loss(&x);
            l.backward();
            x.grad().copy()
        };
        let eps = 1e-6;
        let flat = x.detach().flatten(0, -1);
        for i in 0..flat.size()[0] {
            let bump = |delta: f64| {
                let y = flat.copy();
                let _ = y.get(i).fill_(flat.double_value(&[i]) + delta);
                tch::no_grad(|| value(&loss(&y.view_as(&x))))
            };
            let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps);
            let auto = analytic.flatten(0, -1).double_value(&[i]);
            assert!((numeric - auto).abs() < 1e-5 * (1.0 + numeric.abs()), "entry {i}: numeric {numeric}, autograd {auto}");
        }
    }

    #[test]
    fn cross_entropy_by_hand() {
        // log-softmax of [0, ln 3] is [ln 1/4, ln 3/4].
        let logits = t(&[0.0, 3f32.ln(), 0.0, 3f32.ln()], 2, 2);
        let labels = Tensor::from_slice(&[1i64, 0]);
        let expected = -(0.75f64.ln() + 0.25f64.ln()) / 2.0;
        assert!((value(&cross_entropy(&logits, &labels).unwrap()) - expected).abs() < 1e-6);
        check_gradient(&t(&[0.3, -0.2, 1.0, 0.5], 2, 2), |x| cross_entropy(x, &labels).unwrap());
        assert!(cross_entropy(&logits, &Tensor::from_slice(&[1i64])).is_err());
    }

    #[test]
    fn projection_regularization_by_hand() {
        // z = [[1, 2], [3, 0]]: mean|z| = 1.5; centred [[-1, 1], [1, -1]], covariance off-diagonal
        // = (-1 + -1) / 1 = -2, so decorrelation 2; column spread mean |centred| = 1.
        let z = t(&[1.0, 2.0, 3.0, 0.0], 2, 2);
        assert!((value(&centering_decorrelation(&z).unwrap()) - 3.5).abs() < 1e-6);
        let pr = projection_regularization(&z, &z).unwrap();
        assert!((value(&pr) - (3.5 + 3.5 + 1.0)).abs() < 1e-6);
        let other = t(&[0.5, -1.0, 2.0, 0.1, -0.3, 0.7], 3, 2);
        check_gradient(&t(&[1.0, 2.0, 3.0, 0.5, -1.0, 0.2], 3, 2), |x| projection_regularization(&other.to_kind(Kind::Double), x).unwrap());
    }

    #[test]
    fn l1_adds_each_tensors_mean() {
        let a = t(&[1.0, -3.0], 1, 2);
        let b = t(&[-2.0], 1, 1);
        assert!((value(&l1_penalty([&a, &b]).unwrap()) - 4.0).abs() < 1e-6);
    }

    #[test]
    fn feature_alignment_by_hand() {
        // Reference cells on the axes; query cell 0 matches reference 0 exactly (cos 1), query
        // cell 1 is at 45° to both (cos √½). Keeping half keeps only the exact match.
        let a = t(&[1.0, 0.0, 0.0, 1.0], 2, 2);
        let b = t(&[2.0, 0.0, 1.0, 1.0], 2, 2);
        assert!((value(&feature_alignment(&a, &b, 0.5, None).unwrap()) + 1.0).abs() < 1e-6);
        let both = value(&feature_alignment(&a, &b, 1.0, None).unwrap());
        assert!((both + (1.0 + 0.5f64.sqrt()) / 2.0).abs() < 1e-6);
        assert!(feature_alignment(&a, &b, 0.0, None).is_err());
        let ref_d = t(&[0.3, 1.0, -0.5, 0.2, 0.9, 0.4], 3, 2).to_kind(Kind::Double);
        check_gradient(&t(&[1.0, 0.2, -0.4, 0.8], 2, 2), |x| feature_alignment(&ref_d, x, 1.0, None).unwrap());
    }

    #[test]
    fn feature_alignment_hinge_by_hand() {
        // Query cell 0 matches reference 0 (cos 1), query cell 1 reference 1 (cos 2/√5); the
        // hinge adds relu(cos(matched reference, random query cell) + 0.5) for each kept cell.
        let a = t(&[1.0, 0.0, 0.0, 1.0], 2, 2);
        let b = t(&[2.0, 0.0, 1.0, 2.0], 2, 2);
        let root5 = 5f64.sqrt();
        let cosine = [[1.0, 1.0 / root5], [0.0, 2.0 / root5]]; // [reference][query]
        let mut replica = SplitMix64::new(9);
        let hinge: f64 = (0..2).map(|matched| (cosine[matched][replica.below(2)] + 0.5f64).max(0.0)).sum::<f64>() / 2.0;
        let expected = -(1.0 + 2.0 / root5) / 2.0 + hinge;
        let loss = value(&feature_alignment(&a, &b, 1.0, Some(&mut SplitMix64::new(9))).unwrap());
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }

    #[test]
    fn contrastive_loss_by_hand() {
        // Two pairs of identical unit vectors at right angles, τ = 1: each row's softmax is over
        // {partner: e^1, the other two: e^0 each}.
        let cells = t(&[1.0, 0.0, 0.0, 1.0], 2, 2);
        let expected = -(1f64.exp() / (1f64.exp() + 2.0)).ln();
        let loss = value(&neighbourhood_contrastive(&cells, &cells, 1.0).unwrap());
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
        // Lower temperature sharpens: identical partners then cost less.
        assert!(value(&neighbourhood_contrastive(&cells, &cells, 0.1).unwrap()) < loss);
        let neighbours = t(&[0.9, 0.1, -0.2, 1.0], 2, 2).to_kind(Kind::Double);
        check_gradient(&t(&[1.0, 0.3, 0.1, 0.8], 2, 2), |x| neighbourhood_contrastive(x, &neighbours, 0.5).unwrap());
        assert!(neighbourhood_contrastive(&cells, &cells, 0.0).is_err());
    }

    #[test]
    fn sparse_center_loss_by_hand() {
        let z = t(&[1.0, 2.0, 3.0, 4.0], 2, 2);
        let w = t(&[1.0, 0.0, 0.5, 0.5], 2, 2);
        let labels = Tensor::from_slice(&[0i64, 1]);
        let centers = t(&[0.0, 0.0, 1.0, 1.0], 2, 2);
        // Cell 0: 1·1² + 0·2² = 1; cell 1: 0.5·2² + 0.5·3² = 6.5; over 2N = 4.
        let loss = value(&sparse_center(&z, &w, &labels, &centers, CenterWeighting::Raw).unwrap());
        assert!((loss - 7.5 / 4.0).abs() < 1e-6);
        // Mean-one weighting: cell 0's weights become [2, 0] → 2; cell 1's stay [1, 1] → 13.
        let loss = value(&sparse_center(&z, &w, &labels, &centers, CenterWeighting::MeanOne).unwrap());
        assert!((loss - 15.0 / 4.0).abs() < 1e-6);
        let wd = w.to_kind(Kind::Double);
        let cd = centers.to_kind(Kind::Double);
        check_gradient(&z, |x| sparse_center(x, &wd, &labels, &cd, CenterWeighting::MeanOne).unwrap());
        assert!(sparse_center(&z, &t(&[1.0, 1.0], 1, 2), &labels, &centers, CenterWeighting::Raw).is_err());
    }

    #[test]
    fn centers_move_toward_their_cells() {
        let z = t(&[2.0, 2.0, 4.0, 0.0, 9.0, 9.0], 3, 2);
        let w = Tensor::ones([3, 2], (Kind::Float, Device::Cpu));
        let labels = Tensor::from_slice(&[0i64, 0, 1]);
        let centers = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        let moved = update_centers(&z, &w, &labels, &centers, 0.5).unwrap();
        // Class 0: Σ (C − Z) = [−6, −2], n = 2 → C − 0.5·[−6, −2]/3 = [1, 1/3].
        let expected = t(&[1.0, 1.0 / 3.0, 2.25, 2.25, 0.0, 0.0], 3, 2);
        assert!(moved.allclose(&expected, 1e-6, 1e-6, false), "{moved:?}");
        // Repeated updates converge on the class means.
        let mut c = centers;
        for _ in 0..200 {
            c = update_centers(&z, &w, &labels, &c, 0.5).unwrap();
        }
        assert!(c.allclose(&t(&[3.0, 1.0, 9.0, 9.0, 0.0, 0.0], 3, 2), 1e-4, 1e-4, false), "{c:?}");
    }
}
