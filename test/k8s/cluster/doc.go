// Package cluster runs branchml's Kubernetes test bed: a single-node
// cluster on 127.0.0.1 (Debian's etcd; kube-apiserver,
// kube-controller-manager, kube-scheduler built from k8s.io/kubernetes;
// the kubernetes-csi snapshot stack and a hostpath CSI driver), built once
// per machine into a cache (BinDir) and started by Start. See
// test/k8s/README.md. Tests use it through package k8stest; make k8s-up
// through cmd/testbed; `branchml quickstart --cluster` directly.
package cluster
