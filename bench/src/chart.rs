//! PNG charts (placeholder until drawn).

use crate::report::Summary;
use crate::Options;

pub fn write_all(_options: &Options, _summary: &[Summary]) -> Result<(), String> {
    Ok(())
}
