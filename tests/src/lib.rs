//! End-to-end tests live in `tests/`; they start the real binaries on a real `dbus-daemon`
//! through `stakpak-testkit`.
