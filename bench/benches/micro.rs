//! Micro-benchmarks (criterion) of the runtime's per-request building blocks: a hook call
//! through the host, route lookup, the rate-limit check and the permission check. They run
//! on a real host (an embedded PostgreSQL is started for it) with one synthetic extension and
//! the shipped ones. `cargo bench -p solobase-bench --bench micro`; `bench/run.sh` prints
//! their medians in its report.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use solobase::runtime::host::{Begun, Slot};
use solobase::runtime::limits::{Client, Rate, RateLimits};
use solobase::startup::Application;
use solobase_bench::{config, database_url, set_enabled, synthetic};
use solobase_sdk::hooks::HookPoint;
use solobase_sdk::http::{Method, RequestHead};

fn runtime_pieces(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let dir = std::env::temp_dir().join(format!("solobase-micro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let (url, pg) = rt.block_on(database_url(&dir)).expect("a database");
    let mut registrations = synthetic(1, "micro");
    registrations.extend(solobase::runtime::registrations());
    let app = rt
        .block_on(Application::build_with_extensions(
            config(&url, &dir),
            registrations,
        ))
        .expect("the application builds");
    let host = app.extensions().clone();
    rt.block_on(set_enabled(&host, "micro-1", true))
        .expect("enabled");

    let l = host.get("micro-1").expect("the synthetic extension");
    let ext = l.ext().expect("running").clone();
    let mut head = RequestHead::new(Method::GET, "/healthz");
    let slot = Slot::from(HookPoint::PreRequest);
    c.bench_function(
        "hook call (pre_request through ExtensionHost::begin)",
        |b| {
            b.iter(
                || match host.begin(l, slot, false, || ext.pre_request(&mut head)) {
                    Begun::Ready(flow) => black_box(flow),
                    _ => unreachable!("the synthetic hook answers at once"),
                },
            )
        },
    );

    let webhooks = host.get("webhooks").expect("the webhooks extension");
    let table = webhooks.routes.as_ref().expect("its routes");
    c.bench_function(
        "route lookup (an extension's table, with a parameter)",
        |b| {
            b.iter(|| {
                black_box(table.lookup(
                    black_box(&Method::DELETE),
                    black_box("/api/endpoints/3f2c54a8-8f3e-4f55-9a57-6c1c0d1e2f3a"),
                ))
            })
        },
    );
    c.bench_function("route lookup (no such path)", |b| {
        b.iter(|| black_box(table.lookup(black_box(&Method::GET), black_box("/nothing/here"))))
    });

    let open = Rate {
        per_second: 1_000_000_000,
        burst: 1_000_000_000,
    };
    let limits = RateLimits::new(open, open);
    let client = Client::Address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    c.bench_function("rate-limit check (in all and per client, admitted)", |b| {
        b.iter(|| black_box(limits.check(black_box(client))))
    });
    let tight = Rate {
        per_second: 1,
        burst: 1,
    };
    let refusing = RateLimits::new(open, tight);
    let _ = refusing.check(client);
    c.bench_function("rate-limit check (refused)", |b| {
        b.iter(|| black_box(refusing.check(black_box(client))))
    });

    let grants = webhooks.grants.as_ref().expect("its grants");
    c.bench_function("permission check (granted)", |b| {
        b.iter(|| black_box(grants.allows(black_box("events.subscribe"))))
    });
    c.bench_function("permission check (not requested)", |b| {
        b.iter(|| black_box(grants.allows(black_box("users.read"))))
    });

    rt.block_on(app.run_until_stopped(async {}))
        .expect("the application stops");
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, runtime_pieces);
criterion_main!(benches);
