//! Cheap 64-bit checksums (FNV-1a over the f32 bit patterns) of a network's masks and of its
//! parameters, compared across ranks after every topology change and every epoch: ranks that
//! disagree end the run loudly instead of training different models.

use super::{check_agree, Collective};
use crate::error::Result;
use crate::nn::ParamStore;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a of the bit patterns of `values`, continuing from `h`.
pub fn fnv1a(mut h: u64, values: &[f32]) -> u64 {
    for v in values {
        for b in v.to_bits().to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// Checksum of every mask (parameter names and positions included: a mask moved to another
/// parameter changes it).
pub fn masks_checksum(store: &ParamStore) -> Result<u64> {
    let mut h = FNV_OFFSET;
    for (i, p) in store.params.iter().enumerate() {
        if let Some(m) = p.mask() {
            h = fnv1a(h ^ i as u64, &m.to_vec()?);
        }
    }
    Ok(h)
}

/// Checksum of every parameter value and batch-norm buffer.
pub fn params_checksum(store: &ParamStore) -> Result<u64> {
    let mut h = FNV_OFFSET;
    for p in &store.params {
        h = fnv1a(h, &p.value.to_vec()?);
    }
    for b in &store.buffers {
        h = fnv1a(h, &b.value.to_vec()?);
    }
    Ok(h)
}

/// Errors (naming `when` and every rank's checksum) unless all ranks hold the same masks.
pub fn check_masks(c: &dyn Collective, store: &ParamStore, when: &str) -> Result<()> {
    if c.size() == 1 {
        return Ok(());
    }
    let all = c.all_gather_u64(masks_checksum(store)?)?;
    check_agree(&format!("mask checksums {when}"), &all)
}

/// Errors unless all ranks hold the same parameters and buffers, bit for bit.
pub fn check_params(c: &dyn Collective, store: &ParamStore, when: &str) -> Result<()> {
    if c.size() == 1 {
        return Ok(());
    }
    let all = c.all_gather_u64(params_checksum(store)?)?;
    check_agree(&format!("parameter checksums {when}"), &all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ParamRole;
    use crate::tensor::Tensor;

    #[test]
    fn checksum_sees_one_flipped_entry() {
        let mut s = ParamStore::default();
        let w = s.add_param(
            "w",
            Tensor::from_vec(vec![0.5; 8], &[8]).unwrap(),
            ParamRole::Weight,
        );
        let base = masks_checksum(&s).unwrap();
        s.params[w.0].set_mask(Some(Tensor::from_vec(vec![1.0; 8], &[8]).unwrap()));
        let full = masks_checksum(&s).unwrap();
        assert_ne!(base, full);
        let mut m = vec![1.0; 8];
        m[5] = 0.0;
        s.params[w.0].set_mask(Some(Tensor::from_vec(m, &[8]).unwrap()));
        assert_ne!(masks_checksum(&s).unwrap(), full);
        let p = params_checksum(&s).unwrap();
        s.params[w.0].value =
            Tensor::from_vec(vec![0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, -0.5], &[8]).unwrap();
        assert_ne!(params_checksum(&s).unwrap(), p);
    }

    #[test]
    fn disagreement_is_an_error_naming_ranks() {
        assert!(check_agree("x", &[3, 3, 3]).is_ok());
        let e = check_agree("mask checksums after step 7", &[3, 4])
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank 1") && e.contains("after step 7"), "{e}");
    }
}
