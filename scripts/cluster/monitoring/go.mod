// Pins the prometheus-operator release whose CRDs (ServiceMonitor, PodMonitor, PrometheusRule) the tests install,
// so the chart's monitoring objects are validated by the real schemas (scripts/cluster/cluster.py monitoring-crds).
module mobius-cache/cluster/monitoring

go 1.25.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
