//! Input specs: nodes and pods as the scheduler sees them, already reduced from API objects
//! (quantities parsed, defaults applied, affinity terms flattened) by the Python layer.
//! Strings here; [`super::Cluster`] interns them when a spec enters the cluster.

/// A `metav1.LabelSelector` in structured form: matchLabels and matchExpressions
/// `(key, operator, values)`. `None` where a selector is used means "matches nothing".
pub type LabelSelectorSpec = (Vec<(String, String)>, Vec<(String, String, Vec<String>)>);

/// One `v1.NodeSelectorTerm`: matchExpressions on labels, matchFields (only
/// `metadata.name`), each `(key, operator, values)` with operator
/// In|NotIn|Exists|DoesNotExist|Gt|Lt.
#[derive(Clone, Debug, Default)]
pub struct NodeSelectorTermSpec {
    pub match_expressions: Vec<(String, String, Vec<String>)>,
    pub match_fields: Vec<(String, String, Vec<String>)>,
}

#[derive(Clone, Debug, Default)]
pub struct NodeSpec {
    pub name: String,
    pub labels: Vec<(String, String)>,
    /// (key, value, effect) in the node's order.
    pub taints: Vec<(String, String, String)>,
    pub unschedulable: bool,
    /// Allocatable cpu (milli), memory, ephemeral-storage (bytes), pods.
    pub cpu: i64,
    pub memory: i64,
    pub ephemeral: i64,
    pub pods: i64,
    /// Extended and other scalar resources (hugepages-*, example.com/gpu).
    pub scalars: Vec<(String, i64)>,
    /// node.status.images: (names, sizeBytes).
    pub images: Vec<(Vec<String>, i64)>,
}

/// A pod affinity term: namespaces (already defaulted to the owner's namespace when both
/// namespaces and namespaceSelector are empty), namespaceSelector, labelSelector, topologyKey,
/// and a weight (used by preferred terms only).
#[derive(Clone, Debug, Default)]
pub struct AffinityTermSpec {
    pub weight: i64,
    pub namespaces: Vec<String>,
    pub namespace_selector: Option<LabelSelectorSpec>,
    pub selector: Option<LabelSelectorSpec>,
    pub topology_key: String,
}

#[derive(Clone, Debug, Default)]
pub struct SpreadSpec {
    pub max_skew: i64,
    pub topology_key: String,
    /// true for whenUnsatisfiable: DoNotSchedule, false for ScheduleAnyway.
    pub hard: bool,
    pub selector: Option<LabelSelectorSpec>,
    pub min_domains: i64,
    /// nodeAffinityPolicy Honor (default) / Ignore; nodeTaintsPolicy Honor / Ignore (default).
    pub honor_affinity: bool,
    pub honor_taints: bool,
}

#[derive(Clone, Debug, Default)]
pub struct PodSpec {
    /// namespace/name, unique within a cluster.
    pub key: String,
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    pub node_name: String,
    /// Requests (cpu milli, memory, ephemeral-storage) as NodeResourcesFit computes them.
    pub cpu: i64,
    pub memory: i64,
    pub ephemeral: i64,
    pub scalars: Vec<(String, i64)>,
    /// Requests with upstream's defaults for containers without requests (100m / 200Mi).
    pub nonzero_cpu: i64,
    pub nonzero_memory: i64,
    pub node_selector: Vec<(String, String)>,
    /// requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms (None: no requirement).
    pub required_terms: Option<Vec<NodeSelectorTermSpec>>,
    pub preferred_terms: Vec<(i64, NodeSelectorTermSpec)>,
    /// (key, operator, value, effect).
    pub tolerations: Vec<(String, String, String, String)>,
    /// (hostIP, protocol, hostPort) for every container port with hostPort > 0.
    pub host_ports: Vec<(String, String, i64)>,
    pub spread: Vec<SpreadSpec>,
    pub affinity: Vec<AffinityTermSpec>,
    pub anti_affinity: Vec<AffinityTermSpec>,
    pub preferred_affinity: Vec<AffinityTermSpec>,
    pub preferred_anti_affinity: Vec<AffinityTermSpec>,
    /// Normalized image names of init and regular containers, in order.
    pub images: Vec<String>,
}

/// Scoring profile: plugin weights (0 disables a score plugin) and NodeResourcesFit's strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub taint_toleration: i64,
    pub node_affinity: i64,
    pub pod_topology_spread: i64,
    pub inter_pod_affinity: i64,
    pub node_resources_fit: i64,
    pub balanced_allocation: i64,
    pub image_locality: i64,
    /// false: LeastAllocated (default), true: MostAllocated.
    pub most_allocated: bool,
    /// NodeResourcesFit scoring resources (name, weight); default cpu 1, memory 1.
    pub fit_resources: Vec<(String, i64)>,
    /// NodeResourcesBalancedAllocation resources; default cpu, memory.
    pub balanced_resources: Vec<String>,
    /// InterPodAffinity hardPodAffinityWeight (default 1).
    pub hard_pod_affinity_weight: i64,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            taint_toleration: 3,
            node_affinity: 2,
            pod_topology_spread: 2,
            inter_pod_affinity: 2,
            node_resources_fit: 1,
            balanced_allocation: 1,
            image_locality: 1,
            most_allocated: false,
            fit_resources: vec![("cpu".into(), 1), ("memory".into(), 1)],
            balanced_resources: vec!["cpu".into(), "memory".into()],
            hard_pod_affinity_weight: 1,
        }
    }
}
