//! image: (to be written)
