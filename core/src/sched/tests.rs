use super::*;

fn node(name: &str, cpu: i64, mem: i64) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        labels: vec![("kubernetes.io/hostname".into(), name.into())],
        cpu,
        memory: mem,
        pods: 110,
        ..Default::default()
    }
}

fn pod(key: &str, cpu: i64, mem: i64) -> PodSpec {
    PodSpec {
        key: key.into(),
        namespace: "default".into(),
        cpu,
        memory: mem,
        nonzero_cpu: cpu.max(100),
        nonzero_memory: mem.max(200 * MB),
        ..Default::default()
    }
}

#[test]
fn least_allocated_spreads_and_fit_fails_with_upstream_message() {
    let mut c = Cluster::default();
    c.upsert_node(&node("a", 1000, 1 << 30)).unwrap();
    c.upsert_node(&node("b", 2000, 1 << 30)).unwrap();
    let pods: Vec<PodSpec> = (0..3)
        .map(|i| pod(&format!("default/p{i}"), 500, 0))
        .collect();
    let r = c.place_batch(&pods, true, TieBreak::First);
    // b has more room first, then both equal (b at 500/2000 vs a at 0/1000 ...).
    assert!(r.iter().all(|x| x.is_ok()));
    let big = pod("default/big", 5000, 0);
    let r = c.place_batch(&[big], true, TieBreak::First);
    assert_eq!(
        r[0].as_ref().unwrap_err(),
        "0/2 nodes are available: 2 Insufficient cpu."
    );
}

#[test]
fn taints_and_unschedulable_reasons_are_counted_and_sorted() {
    let mut c = Cluster::default();
    for i in 0..12 {
        let mut n = node(&format!("n{i}"), 1000, 1 << 30);
        if i < 10 {
            n.taints = vec![("dedicated".into(), "gpu".into(), "NoSchedule".into())];
        } else {
            n.unschedulable = true;
        }
        c.upsert_node(&n).unwrap();
    }
    let r = c.place_batch(&[pod("default/p", 100, 0)], true, TieBreak::First);
    assert_eq!(
        r[0].as_ref().unwrap_err(),
        "0/12 nodes are available: 10 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) were unschedulable."
    );
}

#[test]
fn cache_follows_assume_and_forget() {
    let mut c = Cluster::default();
    c.upsert_node(&node("a", 1000, 1 << 30)).unwrap();
    let p1 = pod("default/p1", 600, 0);
    let p2 = pod("default/p2", 600, 0);
    assert!(c.place_batch(std::slice::from_ref(&p1), true, TieBreak::First)[0].is_ok());
    assert!(c.place_batch(std::slice::from_ref(&p2), true, TieBreak::First)[0].is_err());
    assert!(c.forget("default/p1"));
    assert!(c.place_batch(&[p2], true, TieBreak::First)[0].is_ok());
}

#[test]
fn hard_spread_limits_skew() {
    let mut c = Cluster::default();
    for (i, z) in ["z1", "z1", "z2"].iter().enumerate() {
        let mut n = node(&format!("n{i}"), 100_000, 1 << 40);
        n.labels.push(("zone".into(), z.to_string()));
        c.upsert_node(&n).unwrap();
    }
    let mut zones = HashMap::new();
    for i in 0..6 {
        let mut p = pod(&format!("default/p{i}"), 10, 0);
        p.labels = vec![("app".into(), "x".into())];
        p.spread = vec![SpreadSpec {
            max_skew: 1,
            topology_key: "zone".into(),
            hard: true,
            selector: Some((vec![("app".into(), "x".into())], vec![])),
            min_domains: 1,
            honor_affinity: true,
            honor_taints: false,
        }];
        let n = c.place_batch(&[p], true, TieBreak::Random)[0]
            .clone()
            .unwrap();
        let z = if n == 2 { "z2" } else { "z1" };
        *zones.entry(z).or_insert(0) += 1;
    }
    assert_eq!(zones["z1"], 3);
    assert_eq!(zones["z2"], 3);
}
