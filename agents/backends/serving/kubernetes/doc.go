// Package kubernetes is the Kubernetes serving backend: TF Serving in two
// Deployments (stable, canary) behind one Service that selects on the app
// label only, so both receive traffic; the split is the replica ratio (a
// Router; Istio weights can come later). The model volume (PVC) is mounted
// read-only; each variant's TF Serving model config (specific version and
// version label) is a key of one ConfigMap. A label moves only after its
// version reports AVAILABLE on every pod of the variant, and a deploy ends
// once every pod resolves the label; the pods are those of the variant's
// Service's EndpointSlices. Metrics are scraped from every ready pod and
// summed (kept cumulative across scale-downs and restarts), since TF
// Serving does not label metrics by version and a scrape through the
// Service reaches one pod. Weights are whole numbers of pods; scaling never
// removes capacity before its replacement is Ready.
//
// As an implementation of the serving backend it imports only packages of
// that concern (agents/backends/serving/...), agents/records, agents/config
// and helpers; never a stage, a command or another concern.
package kubernetes
