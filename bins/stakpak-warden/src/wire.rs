//! The policy's verdicts as they travel on the bus and in the proxy's answers.

use stakpak_policy::Decision;

/// The policy's decision as the wire names it.
pub(crate) fn wire_decision(d: Decision) -> stakpak_proto::Decision {
    match d {
        Decision::Allow => stakpak_proto::Decision::Allow,
        Decision::Ask => stakpak_proto::Decision::Ask,
        Decision::Deny => stakpak_proto::Decision::Deny,
    }
}
