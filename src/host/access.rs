//! Who may open a device file: groups, user names, POSIX ACLs, and the decision.

use super::*;

/// One line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Group {
    name: String,
    members: Vec<String>,
}

pub(super) fn read_groups(path: &Path) -> BTreeMap<u32, Group> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let gid = f[2].parse().ok()?;
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            Some((
                gid,
                Group {
                    name: f[0].to_string(),
                    members,
                },
            ))
        })
        .collect()
}

pub(super) fn read_user_name(path: &Path, uid: u32) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
    })
}

pub(super) struct AccessCtx<'a> {
    pub(super) host: &'a HostRoot,
    pub(super) groups: &'a BTreeMap<u32, Group>,
    pub(super) user_name: Option<&'a str>,
}

impl AccessCtx<'_> {
    pub(super) fn device(&self, abs: &str) -> DeviceFile {
        let path = self.host.path(abs);
        let mut d = DeviceFile {
            path: abs.to_string(),
            exists: false,
            char_device: false,
            uid: None,
            gid: None,
            mode: None,
            group_name: None,
            has_acl: false,
            access: AccessVia::Unknown,
            in_group_now: false,
            in_group_configured: false,
            error: None,
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return d,
            Err(e) => {
                // Exists (or may), but cannot be inspected: say so rather than guess.
                d.exists = true;
                d.error = Some(e.to_string());
                return d;
            }
        };
        d.exists = true;
        d.char_device = meta.file_type().is_char_device();
        d.uid = Some(meta.uid());
        d.gid = Some(meta.gid());
        d.mode = Some(meta.mode() & 0o7777);
        let group = self.groups.get(&meta.gid());
        d.group_name = group.map(|g| g.name.clone());
        d.in_group_now = self.host.gids.contains(&meta.gid());
        d.in_group_configured = d.in_group_now
            || match (group, self.user_name) {
                (Some(g), Some(u)) => g.members.iter().any(|m| m == u),
                _ => false,
            };
        let acl = read_acl(&path);
        d.has_acl = acl.is_some();
        d.access = decide_access(
            self.host.uid,
            &self.host.gids,
            meta.uid(),
            meta.gid(),
            meta.mode(),
            acl.as_deref(),
        );
        d
    }
}

/// One entry of a POSIX access ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

#[cfg(test)]
pub(super) const ACL_USER_OBJ: u16 = 0x01;
pub(super) const ACL_USER: u16 = 0x02;
pub(super) const ACL_GROUP_OBJ: u16 = 0x04;
pub(super) const ACL_GROUP: u16 = 0x08;
pub(super) const ACL_MASK: u16 = 0x10;
pub(super) const ACL_OTHER: u16 = 0x20;
pub(super) const RW: u16 = 0o6;

pub(super) fn read_acl(path: &Path) -> Option<Vec<AclEntry>> {
    let mut buf = vec![0u8; 512];
    let n = rustix::fs::getxattr(path, "system.posix_acl_access", &mut buf).ok()?;
    parse_acl_xattr(&buf[..n])
}

/// The kernel's `system.posix_acl_access` format: a little-endian u32 version (2), then
/// (u16 tag, u16 perm, u32 id) entries.
pub fn parse_acl_xattr(bytes: &[u8]) -> Option<Vec<AclEntry>> {
    let (head, rest) = bytes.split_at_checked(4)?;
    if u32::from_le_bytes(head.try_into().ok()?) != 2 || rest.len() % 8 != 0 {
        return None;
    }
    Some(
        rest.chunks_exact(8)
            .map(|c| AclEntry {
                tag: u16::from_le_bytes([c[0], c[1]]),
                perm: u16::from_le_bytes([c[2], c[3]]),
                id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

/// Whether `uid`/`gids` may open a file read+write, the way the kernel decides it
/// (`generic_permission` / `posix_acl_permission`): the first class that matches decides,
/// even when a later one would grant more.
pub fn decide_access(
    uid: u32,
    gids: &[u32],
    owner: u32,
    group: u32,
    mode: u32,
    acl: Option<&[AclEntry]>,
) -> AccessVia {
    if uid == 0 {
        return AccessVia::Root;
    }
    let grants = |perm: u16, via: AccessVia| {
        if perm & RW == RW {
            via
        } else {
            AccessVia::Denied
        }
    };
    let mode_perm = |shift: u32| ((mode >> shift) & 0o7) as u16;
    if uid == owner {
        return grants(mode_perm(6), AccessVia::Owner);
    }
    if let Some(acl) = acl.filter(|a| a.iter().any(|e| e.tag == ACL_MASK)) {
        let mask = acl
            .iter()
            .find(|e| e.tag == ACL_MASK)
            .map_or(0o7, |e| e.perm);
        if let Some(e) = acl.iter().find(|e| e.tag == ACL_USER && e.id == uid) {
            return grants(e.perm & mask, AccessVia::Acl);
        }
        let mut matched = false;
        for e in acl {
            let hit = match e.tag {
                ACL_GROUP_OBJ => gids.contains(&group),
                ACL_GROUP => gids.contains(&e.id),
                _ => false,
            };
            if hit {
                matched = true;
                if e.perm & mask & RW == RW {
                    return if e.tag == ACL_GROUP_OBJ {
                        AccessVia::Group
                    } else {
                        AccessVia::Acl
                    };
                }
            }
        }
        if matched {
            return AccessVia::Denied;
        }
        let other = acl
            .iter()
            .find(|e| e.tag == ACL_OTHER)
            .map_or(mode_perm(0), |e| e.perm);
        return grants(other, AccessVia::Other);
    }
    // A minimal ACL (no mask) is just the mode bits, written differently.
    if gids.contains(&group) {
        return grants(mode_perm(3), AccessVia::Group);
    }
    grants(mode_perm(0), AccessVia::Other)
}
