//! The controller binary SIGKILLed at random points of a 500-object sync, 20 times, with the source changing in
//! between: after the last restart the DR namespace equals the source exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{Env, apply, delete};
use dr_syncer_testlab::process::Process;
use dr_syncer_testlab::{TestNamespace, eventually_async, unique_name};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::{Api, Client};
use rand::RngExt;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_dr-syncer-controller");
const OBJECTS: usize = 500;
const KILLS: usize = 20;

fn config_map(name: &str, value: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}})
}

async fn contents(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items.into_iter().filter_map(|cm| Some((cm.metadata.name?, cm.data.as_ref()?.get("v")?.clone()))).collect()
}

fn controller(env: &Env) -> Process {
    let args = dr_syncer_testlab::process::controller_args(env.dr.kubeconfig_path(), env.ctl.name());
    Process::spawn(Path::new(BIN), &args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

#[tokio::test]
async fn controller_killed_mid_sync_twenty_times_converges_exactly() {
    let env = Env::start_with("crash", false).await;
    let src = TestNamespace::create(&env.source, "crash-src").await;
    let dst = unique_name("crash-dst");
    let _g = TestNamespace::guard(&env.dr, &dst);
    let applies = (0..OBJECTS).map(|i| {
        let (client, ns) = (env.source_client.clone(), src.name().to_string());
        async move { apply(&client, &ns, &config_map(&format!("cm-{i:03}"), "0")).await }
    });
    futures::future::join_all(applies).await;
    let spec = |token: usize| {
        json!({"sourceNamespace": src.name(), "destinationNamespace": dst, "clusterMappingRef": {"name": "pair"},
               "replicationMode": "Manual", "syncTrigger": format!("run-{token}"), "resourceTypes": ["configmaps"]})
    };
    let mut rng = rand::rng();
    for round in 0..KILLS {
        // The source moves on: some values change, some objects go, some come.
        for _ in 0..10 {
            let i = rng.random_range(0..OBJECTS);
            apply(&env.source_client, src.name(), &config_map(&format!("cm-{i:03}"), &round.to_string())).await;
        }
        delete(&env.source_client, "v1", "ConfigMap", src.name(), &format!("cm-{:03}", rng.random_range(0..OBJECTS)))
            .await;
        apply(&env.source_client, src.name(), &config_map(&format!("extra-{round}"), "x")).await;
        env.mapping("m", spec(round)).await;
        let mut ctl = controller(&env);
        ctl.wait_for_log("sync started", Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1500))).await;
        ctl.signal("KILL");
        ctl.wait_exit(Duration::from_secs(10));
    }
    let mut ctl = controller(&env);
    let last = format!("run-{}", KILLS - 1);
    env.wait_mapping("m", "the last trigger handled", |s| {
        let done = s.phase == Some(dr_syncer_api::namespace_mapping::NamespaceMappingPhase::Completed);
        if s.last_handled_trigger.as_deref() == Some(last.as_str()) && done { Ok(()) } else { Err("not yet".into()) }
    })
    .await;
    eventually_async("DR equal to the source", Duration::from_secs(60), || async {
        let (want, got) = (contents(&env.source_client, src.name()).await, contents(&env.dr_client, &dst).await);
        if want == got {
            Ok(())
        } else {
            let missing: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(v)).map(|(k, _)| k).take(5).collect();
            let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).take(5).collect();
            Err(format!("{} vs {}: differing {missing:?}, extra {extra:?}", want.len(), got.len()))
        }
    })
    .await;
    ctl.terminate(Duration::from_secs(20));
}
