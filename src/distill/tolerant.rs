//! The tolerant-teacher loss of Yang et al., AAAI 2019 (slot; filled in by its own change).
