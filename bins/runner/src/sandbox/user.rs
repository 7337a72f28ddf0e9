//! `--user` resolution: `name`, `uid`, `name:group` or `uid:gid`, looked up in the
//! container's own /etc/passwd and /etc/group (never the host's).

use std::path::Path;

/// A `--user` value that could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is not in the rootfs /etc/passwd.
    #[error("user {0:?} not found in the image's /etc/passwd")]
    UnknownUser(String),
    /// The group name is not in the rootfs /etc/group.
    #[error("group {0:?} not found in the image's /etc/group")]
    UnknownGroup(String),
}

/// Resolves `spec` against the passwd and group files of `rootfs` into (uid, gid).
/// A numeric uid with no group gets the passwd entry's group, or gid = uid if none.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<(u32, u32), UserError> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd_entry(&passwd, user);
    let uid = match (user.parse::<u32>(), &entry) {
        (Ok(uid), _) => uid,
        (Err(_), Some((uid, _))) => *uid,
        (Err(_), None) => return Err(UserError::UnknownUser(user.to_string())),
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
                group_id(&groups, g).ok_or_else(|| UserError::UnknownGroup(g.to_string()))?
            }
        },
        None => entry.map(|(_, gid)| gid).unwrap_or(uid),
    };
    Ok((uid, gid))
}

/// (uid, gid) of the passwd line whose name (or uid) is `user`.
fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let (name, uid, gid) = (fields.first()?, fields.get(2)?, fields.get(3)?);
        (*name == user || *uid == user).then(|| Some((uid.parse().ok()?, gid.parse().ok()?)))?
    })
}

fn group_id(groups: &str, group: &str) -> Option<u32> {
    groups.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (*fields.first()? == group).then(|| fields.get(2)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        dir
    }

    #[test]
    fn names_resolve_from_the_rootfs_passwd() {
        let root = rootfs();
        assert_eq!(resolve(root.path(), "app").unwrap(), (1000, 1001));
        assert_eq!(resolve(root.path(), "root").unwrap(), (0, 0));
        assert_eq!(resolve(root.path(), "app:staff").unwrap(), (1000, 50));
    }

    #[test]
    fn numbers_need_no_entry() {
        let root = rootfs();
        assert_eq!(resolve(root.path(), "1000").unwrap(), (1000, 1001));
        assert_eq!(resolve(root.path(), "4242").unwrap(), (4242, 4242));
        assert_eq!(resolve(root.path(), "4242:7").unwrap(), (4242, 7));
    }

    #[test]
    fn unknown_names_are_errors() {
        let root = rootfs();
        assert!(
            matches!(resolve(root.path(), "nobody"), Err(UserError::UnknownUser(u)) if u == "nobody")
        );
        assert!(
            matches!(resolve(root.path(), "app:wheel"), Err(UserError::UnknownGroup(g)) if g == "wheel")
        );
    }
}
