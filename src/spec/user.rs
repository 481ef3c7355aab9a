//! User resolution: `user[:group]` (names or numbers) against the image's
//! `/etc/passwd` and `/etc/group` text, as runc's `user.GetExecUser` does.
//!
//! Pure: the caller reads the files and passes their contents.

/// The process identity a user spec resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from /etc/group membership, when no group was
    /// given explicitly).
    pub additional_gids: Vec<u32>,
    /// Home directory from /etc/passwd, when the user has an entry.
    pub home: Option<String>,
}

impl ResolvedUser {
    pub(crate) fn to_oci(&self) -> oci_spec::runtime::User {
        let mut u = oci_spec::runtime::User::default();
        u.set_uid(self.uid)
            .set_gid(self.gid)
            .set_umask(None)
            .set_additional_gids(if self.additional_gids.is_empty() {
                None
            } else {
                Some(self.additional_gids.clone())
            });
        u
    }
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    })
}

/// The gid of group `name` in an /etc/group text (`group_add`).
pub(super) fn group_gid(text: &str, name: &str) -> Option<u32> {
    group_entries(text).find(|g| g.name == name).map(|g| g.gid)
}

/// Resolve `spec` (`""`, `uid`, `name`, `uid:gid`, `name:group`, …). An empty
/// spec is root. Numbers need no entry; names must be found. Without an
/// explicit group the primary group comes from the passwd entry (0 without
/// one) and supplementary groups from /etc/group membership.
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = match u.parse::<u32>() {
        Ok(uid) => passwd.and_then(|p| passwd_entries(p).find(|e| e.uid == uid)),
        Err(_) => {
            let Some(p) = passwd else {
                return Err(format!(
                    "the image has no /etc/passwd to look up \"{u}\" in; use a numeric UID[:GID]"
                ));
            };
            match passwd_entries(p).find(|e| e.name == u) {
                Some(e) => Some(e),
                None => return Err(format!("no user \"{u}\" in the image's /etc/passwd")),
            }
        }
    };
    let uid = match u.parse::<u32>() {
        Ok(uid) => uid,
        // A name always has an entry here (checked above).
        Err(_) => entry.as_ref().map_or(0, |e| e.uid),
    };
    let home = entry.as_ref().map(|e| e.home.to_string());
    let (gid, additional_gids) = match g.filter(|g| !g.is_empty()) {
        Some(g) => {
            let gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    let Some(gt) = group else {
                        return Err(format!(
                            "the image has no /etc/group to look up \"{g}\" in; use a numeric GID"
                        ));
                    };
                    group_entries(gt)
                        .find(|e| e.name == g)
                        .map(|e| e.gid)
                        .ok_or_else(|| format!("no group \"{g}\" in the image's /etc/group"))?
                }
            };
            (gid, Vec::new())
        }
        None => {
            let gid = entry.as_ref().map_or(0, |e| e.gid);
            let mut extra: Vec<u32> = match (&entry, group) {
                (Some(e), Some(gt)) => group_entries(gt)
                    .filter(|g| g.members.contains(&e.name) && g.gid != gid)
                    .map(|g| g.gid)
                    .collect(),
                _ => Vec::new(),
            };
            extra.sort_unstable();
            extra.dedup();
            (gid, extra)
        }
    };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\nbob:x:1000:1000::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnginx:x:101:\nwww:x:33:nginx,bob\nbob:x:1000:\n";

    #[test]
    fn empty_is_root() {
        let u = resolve_user("", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_deref()), (0, 0, Some("/root")));
    }

    #[test]
    fn names_and_numbers() {
        let u = resolve_user("nginx", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (101, 101, vec![33])
        );
        let u = resolve_user("1000", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (1000, 1000, vec![33]));
        let u = resolve_user("4242", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((u.uid, u.gid, u.home), (4242, 0, None));
        let u = resolve_user("bob:www", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (1000, 33, vec![]));
        let u = resolve_user("5:6", None, None).unwrap();
        assert_eq!((u.uid, u.gid), (5, 6));
    }

    #[test]
    fn unknown_names_fail() {
        assert!(resolve_user("nobody", Some(PASSWD), Some(GROUP))
            .unwrap_err()
            .contains("no user \"nobody\""));
        assert!(resolve_user("nginx", None, None)
            .unwrap_err()
            .contains("no /etc/passwd"));
        assert!(resolve_user("0:staff", Some(PASSWD), Some(GROUP))
            .unwrap_err()
            .contains("no group \"staff\""));
    }
}
