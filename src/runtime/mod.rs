//! runtime: (to be written)
