//! Non-finite checks: a run whose loss stays finite can still carry NaN or infinite weights or
//! batch-norm statistics; these checks name the first such tensor so that nothing non-finite is
//! written or evaluated.

use crate::error::Result;
use crate::nn::Network;

/// Whether `values` holds a NaN or an infinity.
pub fn has_non_finite(values: &[f32]) -> bool {
    values.iter().any(|v| !v.is_finite())
}

/// The name of the first tensor of `net` (parameter values, momenta, batch-norm statistics)
/// holding a NaN or an infinity, in the store's order.
pub fn first_non_finite(net: &Network) -> Result<Option<String>> {
    for p in &net.store.params {
        if has_non_finite(&p.value.to_vec()?) {
            return Ok(Some(p.name.clone()));
        }
        if let Some(m) = &p.momentum {
            if has_non_finite(&m.to_vec()?) {
                return Ok(Some(format!("{}.momentum", p.name)));
            }
        }
    }
    for b in &net.store.buffers {
        if has_non_finite(&b.value.to_vec()?) {
            return Ok(Some(b.name.clone()));
        }
    }
    Ok(None)
}
