//! distribution: what an image is called and what its metadata says, as the
//! OCI distribution and image specs define them — references (`reference`:
//! parsing, Docker Hub normalisation, the offline transports) and manifests
//! (`manifest`: media types, platform choice, the image config).
//!
//! Pure: no I/O. It sits below both `store` (which files refs and manifests)
//! and `image` (which fetches them) and `config` (a definition's `image`), so
//! each of them parses a reference with one grammar and no arrow points back
//! up from the store to the image module.

pub mod commit;
pub mod manifest;
pub mod reference;

pub use reference::{Reference, ReferenceError, RegistryRef};
