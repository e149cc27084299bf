//! The demo's own check (`bash config/demo.sh --check`): the demo's Prosody and gateway are
//! already running, started by the script exactly as the demo starts them, and this calls
//! `echo@gw.localhost` as alice, as a new user would. Ignored in the normal suite: it needs the
//! demo running (the script passes its c2s port in `JINGLE_DEMO_C2S_PORT`).

use crate::support::caller::{CallSetup, Exchange, TestCaller};
use crate::support::{wait_attached, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by config/demo.sh --check against the running demo"]
async fn the_demo_answers_an_echo_call() {
    let port: u16 = std::env::var("JINGLE_DEMO_C2S_PORT")
        .expect("JINGLE_DEMO_C2S_PORT: run this through config/demo.sh --check")
        .parse()
        .expect("JINGLE_DEMO_C2S_PORT is a port");
    within(90, async {
        let mut alice = TestCaller::new(port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut call = alice
            .call("echo@gw.localhost", &CallSetup::browser())
            .await
            .expect("echo@gw.localhost answers");
        let received = alice.exchange(&mut call, &Exchange::tone(3, 440.0)).await;
        crate::calls::assert_tone(&received, 440.0, "the demo's echo");
        alice.hang_up(call).await;
        alice.close().await;
    })
    .await;
}
