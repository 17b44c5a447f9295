// The sandbox ("pause") process of every pod on petrel's one-machine cluster
// (testbed/k8s/cluster.sh builds it into a static image; there is no registry
// to pull registry.k8s.io/pause from). Standard library only.
module petrel.dev/testbed/k8s/pause

go 1.26.0
