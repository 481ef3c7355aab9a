//! image: references, manifests and (later) the registry client.
pub mod manifest;
pub mod reference;
