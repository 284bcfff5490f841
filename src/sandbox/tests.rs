//! The sandbox's types on their own. Its behaviour over HTTP is tested from outside, as any
//! client sees it: tests/sandbox.rs in the integration tests.

use super::*;

#[test]
fn handle_and_hooks_are_thread_safe() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sandbox>();
    assert_send_sync::<SandboxOptions>();
    assert_send_sync::<RecordedRequest>();
    assert_send_sync::<Fault>();
}
