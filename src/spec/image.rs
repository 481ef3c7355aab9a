//! The few fields of an OCI image config the planner reads.
//!
//! Pure data: built from `oci_spec::image::ImageConfiguration` (the store's
//! `Image::config`), or empty for a plain `rootfs` directory.

use oci_spec::image::ImageConfiguration;

/// What the planner takes from an image's config (`config` object of the OCI
/// image configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfigView {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` entries, in order.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user[:group]` as the image says (names or numbers).
    pub user: Option<String>,
    /// The signal that stops the container (`SIGTERM` when absent).
    pub stop_signal: Option<String>,
    /// `Volumes` (a Containerfile's VOLUME): paths that get a fresh
    /// anonymous volume each, sorted.
    pub volumes: Vec<String>,
}

impl ImageConfigView {
    /// Take the planner's fields from a full image configuration.
    pub fn from_image_config(c: &ImageConfiguration) -> ImageConfigView {
        let Some(cfg) = c.config() else {
            return ImageConfigView::default();
        };
        ImageConfigView {
            entrypoint: cfg.entrypoint().clone(),
            cmd: cfg.cmd().clone(),
            env: cfg.env().clone().unwrap_or_default(),
            working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
            user: cfg.user().clone().filter(|u| !u.is_empty()),
            stop_signal: cfg.stop_signal().clone().filter(|s| !s.is_empty()),
            volumes: {
                let mut v: Vec<String> = cfg.volumes().clone().unwrap_or_default();
                v.sort();
                v.dedup();
                v
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_config_object() {
        let c: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                "config":{"Entrypoint":["/ep"],"Cmd":["a"],"Env":["A=1"],"WorkingDir":"/w","User":"","StopSignal":"SIGQUIT","Volumes":{"/var/lib/db":{},"/data":{}}}}"#,
        )
        .unwrap();
        let v = ImageConfigView::from_image_config(&c);
        assert_eq!(v.entrypoint, Some(vec!["/ep".to_string()]));
        assert_eq!(v.cmd, Some(vec!["a".to_string()]));
        assert_eq!(v.env, vec!["A=1".to_string()]);
        assert_eq!(v.working_dir.as_deref(), Some("/w"));
        assert_eq!(v.user, None);
        assert_eq!(v.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(v.volumes, ["/data", "/var/lib/db"]);
    }
}
