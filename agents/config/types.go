package config

import "time"

// APIVersion is the only accepted value of branchml.yaml's apiVersion field.
const APIVersion = "branchml.dev/v1"

// Stage keys of the branch mapping, in the order the lifecycle runs them.
const (
	StageBuild    = "build"
	StagePipeline = "pipeline"
	StageTrain    = "train"
	StageDeploy   = "deploy"
)

// StageOrder lists the stage keys in lifecycle order; a branch mapped to
// several stages runs them in this order.
var StageOrder = []string{StageBuild, StagePipeline, StageTrain, StageDeploy}

// Config is the effective configuration of one ML repository: built-in
// defaults, then branchml.yaml, then BRANCHML_* environment variables, then
// flags. Field names follow the YAML keys of resources/schema/branchml.schema.json.
type Config struct {
	APIVersion string `json:"apiVersion"`
	// Project names the ML project; it prefixes pipeline, experiment, volume
	// and model names. DNS-1123 label: [a-z0-9-], at most 40 characters.
	Project string `json:"project"`
	// Branches maps a stage key (build, pipeline, train, deploy) to the git
	// branch whose merges run it. Several stages may share one branch.
	Branches map[string]string `json:"branches"`
	// Stages holds options per stage key (build, pipeline, train, deploy).
	Stages     map[string]StageOptions `json:"stages,omitempty"`
	Components []Component             `json:"components"`
	Pipeline   Pipeline                `json:"pipeline"`
	Training   Training                `json:"training"`
	Snapshot   Snapshot                `json:"snapshot"`
	Deploy     Deploy                  `json:"deploy"`
	Backends   Backends                `json:"backends"`

	// File is the path the configuration was read from ("" for defaults only).
	File string `json:"-"`
	// Dir is the directory of File: relative paths in the file are relative to it.
	Dir string `json:"-"`
}

// StageOptions are the options of one stage.
type StageOptions struct {
	// RequireApproval makes the stage refuse (exit 2, before any work) a
	// commit that did not arrive on its branch through a merged pull
	// request with an approving review.
	RequireApproval bool `json:"requireApproval,omitempty"`
}

// RequiresApproval reports whether stage (a key of Branches) has
// stages.<stage>.requireApproval set.
func (c *Config) RequiresApproval(stage string) bool {
	return c != nil && c.Stages[stage].RequireApproval
}

// Component is one pipeline component whose image the build stage makes.
type Component struct {
	// Name is the component's name, e.g. "prepare-data"; unique.
	Name string `json:"name"`
	// Path is the component's source directory, relative to the repository root.
	Path string `json:"path"`
	// Kind is "go" (built without a daemon into an OCI image) or "dockerfile".
	Kind string `json:"kind"`
	// Image is the image repository without registry host, e.g. "djia30/train".
	Image string `json:"image"`
	// Test is the test command (argv) run before building, in the
	// component's directory; for kind go the default is `go test` of every
	// package of the module that the component's binary is built from.
	Test []string `json:"test,omitempty"`
	// Dockerfile is the Dockerfile path for kind dockerfile, relative to the repository root.
	Dockerfile string `json:"dockerfile,omitempty"`
	// Base is the base image reference for kind go; "" means branchml's
	// base (non-root user, CA certificates, /tmp), "scratch" an empty one.
	Base string `json:"base,omitempty"`
	// Binary is the path of the binary inside the image for kind go;
	// default "/ko-app/<name>".
	Binary string `json:"binary,omitempty"`
	// Platforms are the "os/arch[/variant]" targets of a kind go image
	// (several make a multi-platform image index, e.g. linux/amd64 and
	// linux/arm64); default the agent's own (linux/<its arch>).
	Platforms []string `json:"platforms,omitempty"`
}

// Pipeline configures the kf-pipeline stage.
type Pipeline struct {
	// Name is the KFP pipeline's display name; default "<project>".
	Name string `json:"name"`
	// Spec is the path of the KFP v2 IR YAML, relative to the repository root.
	Spec string `json:"spec"`
	// Description of the pipeline as shown in the KFP UI.
	Description string `json:"description,omitempty"`
	// Resources maps a task name of the pipeline's root DAG to its resources.
	Resources map[string]Resources `json:"resources,omitempty"`
}

// Resources are a task's compute requests and limits in Kubernetes quantity
// notation ("500m", "2", "1Gi").
type Resources struct {
	CPU         string       `json:"cpu,omitempty"`
	Memory      string       `json:"memory,omitempty"`
	Accelerator *Accelerator `json:"accelerator,omitempty"`
}

// Accelerator is an on-demand accelerator request, e.g. type
// "nvidia.com/gpu", count 1.
type Accelerator struct {
	Type  string `json:"type"`
	Count int    `json:"count"`
}

// Training configures the training stage.
type Training struct {
	// Experiment is the KFP experiment runs are created in; default "<project>".
	Experiment string `json:"experiment"`
	// Parameters are the pipeline's runtime parameters (name → value, as KFP
	// runtime_config.parameters).
	Parameters map[string]any `json:"parameters,omitempty"`
	Data       DataVolume     `json:"data"`
	Model      ModelVolume    `json:"model"`
	// KPIs gate promotion: all must hold for a PR into the deploy branch.
	KPIs []KPI `json:"kpis,omitempty"`
	// Gate says where the KPIs with confidence (those without op) are
	// measured: a held-out split and the per-example predictions of it that
	// the pipeline writes.
	Gate Gate `json:"gate"`
	// Timeout is the deadline of one run; StallTimeout the longest time
	// without any state or task progress before the run is called stalled.
	Timeout      Duration `json:"timeout"`
	StallTimeout Duration `json:"stallTimeout"`
}

// DataVolume says where the training data lives.
type DataVolume struct {
	// Volume is the data volume (PVC) name; default "<project>-data".
	Volume string `json:"volume"`
	// Provision creates the volume of Size and fetches Source into it when
	// true; when false an existing volume is reused.
	Provision bool `json:"provision"`
	// Size in Kubernetes quantity notation, e.g. "2Gi".
	Size string `json:"size"`
	// Source is where the data is fetched from when provisioning: a local
	// path (file or folder), or "kaggle:<owner>/<dataset>".
	Source string `json:"source,omitempty"`
	// Parameter is the pipeline parameter that receives the data path.
	Parameter string `json:"parameter"`
}

// ModelVolume says where models are written.
type ModelVolume struct {
	// Volume is the model volume (PVC) name; default "<project>-model".
	Volume string `json:"volume"`
	Size   string `json:"size"`
	// Parameter is the pipeline parameter that receives the model base path;
	// VersionParameter the one that receives the model version number.
	Parameter        string `json:"parameter"`
	VersionParameter string `json:"versionParameter"`
}

// KPI is one promotion condition. It has one of two forms.
//
// With Op it is a point check over the metrics.json a run produced: Metric
// and Baseline are dotted paths into it ("test.rows",
// "baselines.base_rate.test.log_loss"); exactly one of Value and Baseline
// is set. It has no confidence: use it for sanity floors, not for skill.
//
// Without Op it is a KPI with confidence on the gate split (Training.Gate):
// Metric is one of "auc", "accuracy" (higher is better), "log_loss",
// "brier" (lower is better), computed by branchml from the per-example
// predictions; it is compared with exactly one of Baseline (a predictions
// column, or "prior": the constant at the gate split's own share of
// label 1), Champion (the model serving on the deploy branch) or Value (a
// constant). The gate passes it only when the lower bound of the bootstrap
// confidence interval of the improvement (value − reference for higher-is-
// better metrics, reference − value for lower-is-better) exceeds Margin.
type KPI struct {
	Metric   string   `json:"metric"`
	Op       string   `json:"op,omitempty"` // one of > >= < <=; empty for a KPI with confidence
	Value    *float64 `json:"value,omitempty"`
	Baseline string   `json:"baseline,omitempty"`
	// Champion compares with the model serving on the deploy branch, row by
	// row on the rows both predicted; without a champion the KPI is skipped.
	Champion bool `json:"champion,omitempty"`
	// Margin is the least improvement the lower confidence bound must
	// exceed, in the metric's unit (AUC points, nats); default 0.
	Margin float64 `json:"margin,omitempty"`
}

// Gate configures the promotion gate's held-out evaluation
// (training.gate). The pipeline writes, for the rows of Split, one CSV row
// per example: the Label column (0 or 1), the model's probability in Score,
// one column per baseline, and the Key and Block columns; branchml computes
// the metrics and a block-bootstrap confidence interval of each KPI's
// improvement. Split must be a split the pipeline used for neither
// training, early stopping nor model selection.
type Gate struct {
	// Split names the held-out split, e.g. "test". Empty: no KPIs with
	// confidence (only point checks).
	Split string `json:"split,omitempty"`
	// Parameter, when set, is the pipeline parameter that receives Split.
	Parameter string `json:"parameter,omitempty"`
	// Predictions is the output artifact of the run that holds the
	// predictions CSV.
	Predictions ArtifactRef `json:"predictions"`
	// Label and Score are column names (default "label" and "model").
	Label string `json:"label"`
	Score string `json:"score"`
	// Key are the columns that identify an example, to pair the challenger's
	// rows with the champion's (e.g. [date, ticker]).
	Key []string `json:"key,omitempty"`
	// Block is the column whose values are resampled together (e.g. "date":
	// all tickers of a day, which move together); empty resamples rows.
	// BlockLength consecutive Block values (in sorted order) form one block of
	// the circular block bootstrap, for serial dependence (default 1).
	Block       string `json:"block,omitempty"`
	BlockLength int    `json:"blockLength"`
	// Confidence is the two-sided confidence level of the intervals (default
	// 0.95); Resamples the bootstrap resamples (default 2000); Seed makes the
	// decision reproducible.
	Confidence float64 `json:"confidence"`
	Resamples  int     `json:"resamples"`
	Seed       int64   `json:"seed"`
}

// ArtifactRef names an output artifact of a pipeline task; File names a
// file inside a directory artifact ("" for a file artifact).
type ArtifactRef struct {
	Task     string `json:"task"`
	Artifact string `json:"artifact"`
	File     string `json:"file,omitempty"`
}

// Snapshot configures data and model snapshots (ML versioning).
type Snapshot struct {
	// Enabled switches snapshots and lineage on (the seed's ML versioning switch).
	Enabled bool `json:"enabled"`
	// Class is the VolumeSnapshotClass (its driver must be
	// backends.storage.driver); "" uses the class marked default
	// (snapshot.storage.kubernetes.io/is-default-class) for that driver.
	Class string `json:"class"`
	// Keep is how many snapshots per volume retention keeps (newest first);
	// snapshots referenced by a deployed model's lineage are always kept.
	Keep int `json:"keep"`
	// ReadyTimeout bounds the wait for readyToUse.
	ReadyTimeout Duration `json:"readyTimeout"`
}

// Deploy configures the deploy-model stage.
type Deploy struct {
	// Model is the model name served (TF Serving's model_name).
	Model string `json:"model"`
	// Strategy is "canary" (progressive) or "ab" (fixed split).
	Strategy string `json:"strategy"`
	Canary   Canary `json:"canary"`
	AB       AB     `json:"ab"`
	// Serving says what serves the model.
	Serving Serving `json:"serving"`
}

// Canary is a progressive rollout policy in the style of Flagger and Argo
// Rollouts.
type Canary struct {
	// Steps are the canary weights in percent, ascending, each 0 < w <= 100;
	// the last is normally 100.
	Steps []int `json:"steps"`
	// Interval is how long each step is analysed.
	Interval Duration `json:"interval"`
	// Threshold is how many failed analyses cause a rollback.
	Threshold int `json:"threshold"`
	// MinRequests is the least number of canary requests an analysis needs;
	// fewer counts as a failure (no data is a failure).
	MinRequests int `json:"minRequests"`
	// SuccessRate is the least canary request success rate, in percent.
	SuccessRate float64 `json:"successRate"`
	// MaxLatencyP99 is the largest canary p99 latency allowed.
	MaxLatencyP99 Duration `json:"maxLatencyP99"`
	// Smoke are predict requests with expected answers run against the canary
	// before traffic moves.
	Smoke []SmokeTest `json:"smoke,omitempty"`
}

// SmokeTest is one TF Serving REST predict body and the expected predictions
// (within Tolerance, absolute).
type SmokeTest struct {
	Name      string         `json:"name"`
	Request   map[string]any `json:"request"`
	Expect    [][]float64    `json:"expect,omitempty"`
	Tolerance float64        `json:"tolerance,omitempty"`
}

// AB is a fixed-split experiment between the stable and the candidate model.
type AB struct {
	// Weight is the candidate's traffic share in percent.
	Weight int `json:"weight"`
	// Duration and Requests end the experiment, whichever comes first.
	Duration Duration `json:"duration"`
	Requests int      `json:"requests"`
}

// Serving says how a model is served.
type Serving struct {
	// Component is the component whose image serves the model (its binary
	// speaks TF Serving's REST API), e.g. "serve"; "" means Image.
	Component string `json:"component,omitempty"`
	// Image is the serving image, e.g. "tensorflow/serving:2.14.1".
	Image string `json:"image,omitempty"`
	// Command overrides the serving command (argv) for the local backend.
	Command []string `json:"command,omitempty"`
	// Replicas is the total number of replicas split between stable and
	// canary; with Autoscale unused (the stable starts at minReplicas and
	// the canary's pods follow the stable's count).
	Replicas int `json:"replicas"`
	// Resources are the serving container's compute resources (Kubernetes
	// backend; the local one ignores them), as a container's
	// resources.requests and resources.limits: "cpu" and "memory", each a
	// Kubernetes quantity ("100m", "128Mi"). Autoscale needs requests.cpu.
	Resources ContainerResources `json:"resources,omitempty"`
	// Autoscale, when set, gives the stable Deployment a
	// HorizontalPodAutoscaler (autoscaling/v2, Kubernetes backend; the
	// local one ignores it); nil: the fixed Replicas.
	Autoscale *Autoscale `json:"autoscale,omitempty"`
}

// ContainerResources are compute resources by name ("cpu", "memory") as
// Kubernetes quantities, in the shape of a container's resources.
type ContainerResources struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

// Autoscale is a HorizontalPodAutoscaler's range and CPU target, with the
// field names of autoscaling/v2 (and v1's targetCPUUtilizationPercentage).
type Autoscale struct {
	// MinReplicas and MaxReplicas bound the stable's replicas (MinReplicas
	// left out means 1, as in the HorizontalPodAutoscaler).
	MinReplicas int `json:"minReplicas,omitempty"`
	MaxReplicas int `json:"maxReplicas"`
	// TargetCPUUtilizationPercentage is the mean CPU use of the stable's
	// pods the autoscaler keeps, in percent of resources.requests.cpu.
	TargetCPUUtilizationPercentage int `json:"targetCPUUtilizationPercentage"`
}

// Backends picks the implementation of each external concern: "local" (the
// embedded default) or the real one.
type Backends struct {
	Forge     ForgeBackend     `json:"forge"`
	Registry  RegistryBackend  `json:"registry"`
	Pipelines PipelinesBackend `json:"pipelines"`
	Storage   StorageBackend   `json:"storage"`
	Serving   ServingBackend   `json:"serving"`
	// StateDir is where local backends keep their data; default
	// "$XDG_STATE_HOME/branchml" or "~/.local/state/branchml".
	StateDir string `json:"stateDir,omitempty"`
}

// ForgeBackend: type "local" (a bare git repository) or "github".
type ForgeBackend struct {
	Type string `json:"type"`
	// Remote is the bare repository path or URL for type local.
	Remote string `json:"remote,omitempty"`
	// Owner and Repo name the GitHub repository; APIURL is for GitHub Enterprise.
	Owner  string `json:"owner,omitempty"`
	Repo   string `json:"repo,omitempty"`
	APIURL string `json:"apiURL,omitempty"`
}

// RegistryBackend: type "local" (the embedded OCI registry on loopback) or "oci".
type RegistryBackend struct {
	Type string `json:"type"`
	// Host is the registry host[:port] for type oci, e.g. "ghcr.io/acme".
	Host string `json:"host,omitempty"`
	// Insecure makes Host an insecure registry (see InsecureRegistries).
	Insecure bool `json:"insecure,omitempty"`
	// Addr is the loopback listen address of the local registry.
	Addr string `json:"addr,omitempty"`
	// CAFile is a PEM bundle of CA certificates trusted, besides the
	// system's, for TLS to every registry (a private CA); relative to the
	// configuration file.
	CAFile string `json:"caFile,omitempty"`
	// InsecureRegistries are registry hosts ("host[:port]"; without a port,
	// every port of the host) whose TLS certificate is not verified and
	// that may be reached over plain HTTP, as Docker's insecure-registries
	// (test registries only): the backend's own host or a base image's.
	InsecureRegistries []string `json:"insecureRegistries,omitempty"`
	// RetryWindow bounds how long one registry operation retries temporary
	// failures (5xx, 429, timeouts, refused connections), Retry-After
	// included; zero means the default (1m).
	RetryWindow Duration `json:"retryWindow,omitzero"`
}

// PipelinesBackend: type "local" (the embedded runner) or "kfp".
type PipelinesBackend struct {
	Type string `json:"type"`
	// Endpoint is the KFP API server base URL, e.g. "https://kfp.example.com".
	Endpoint  string `json:"endpoint,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// CAFile and InsecureSkipVerify are TLS settings for Endpoint.
	CAFile             string `json:"caFile,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
	// Parallelism bounds concurrently running tasks of the local runner.
	Parallelism int `json:"parallelism,omitempty"`
	// Metadata is KFP's ML Metadata service, where KFP v2 records the
	// outputs of a run's tasks (metrics, model URIs).
	Metadata MetadataStore `json:"metadata,omitempty"`
	// ObjectStore is the S3-compatible store of KFP's pipeline root, where
	// the artifact files are.
	ObjectStore ObjectStore `json:"objectStore,omitempty"`
	// Runner configures the local runner (type local).
	Runner LocalRunner `json:"runner,omitempty"`
}

// MetadataStore is an ML Metadata gRPC service (MetadataStoreService).
type MetadataStore struct {
	// Address is host:port, e.g. "metadata-grpc-service.kubeflow:8080"; ""
	// reads outputs from the object store alone.
	Address string `json:"address,omitempty"`
	// TLS speaks TLS (trusting CAFile, or the system roots); default plaintext,
	// as KFP installs it.
	TLS    bool   `json:"tls,omitempty"`
	CAFile string `json:"caFile,omitempty"`
}

// ObjectStore is the S3-compatible object store of the pipeline root
// (MinIO or SeaweedFS as KFP installs them, or S3). Its credentials come
// from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their _FILE
// variables), never from this file.
type ObjectStore struct {
	// Endpoint is the store's URL, e.g. "http://minio-service.kubeflow:9000".
	Endpoint string `json:"endpoint,omitempty"`
	// Bucket is the pipeline root's bucket; when set, only it is read. Default:
	// the bucket each artifact URI names (KFP's default root is
	// minio://mlpipeline/v2/artifacts).
	Bucket string `json:"bucket,omitempty"`
	// Region of the bucket (default us-east-1).
	Region string `json:"region,omitempty"`
	// CAFile and InsecureSkipVerify are TLS settings for Endpoint.
	CAFile             string `json:"caFile,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
}

// LocalRunner configures the embedded pipeline runner.
type LocalRunner struct {
	// Isolation is "container" (each task in an OCI container; the default)
	// or "process" (host processes, a fallback for machines without a runtime).
	Isolation string `json:"isolation,omitempty"`
	// Runtime is the OCI runtime binary (runc, crun or a path); "" picks one.
	Runtime string `json:"runtime,omitempty"`
	// SecretsDir holds the platform spec's secrets and config maps locally
	// (<dir>/secrets/<name>/<key>, <dir>/configmaps/<name>/<key>); "" is
	// <stateDir>/secrets.
	SecretsDir string `json:"secretsDir,omitempty"`
	// Cache enables task caching (tasks with enableCache); nil is true.
	Cache *bool `json:"cache,omitempty"`
}

// StorageBackend: type "local" (directories) or "trident" (PVCs and CSI
// VolumeSnapshots on Kubernetes).
type StorageBackend struct {
	Type         string `json:"type"`
	Namespace    string `json:"namespace,omitempty"`
	StorageClass string `json:"storageClass,omitempty"`
	Kubeconfig   string `json:"kubeconfig,omitempty"`
	// AccessMode of new PVCs: "ReadWriteOnce" (default) or "ReadWriteMany".
	AccessMode string `json:"accessMode,omitempty"`
	// Driver is the CSI driver the storage class and the snapshot class
	// must use (default "csi.trident.netapp.io", Trident's); the test bed
	// sets its hostpath driver.
	Driver string `json:"driver,omitempty"`
	// HostPathDir is, on a single machine whose CSI driver keeps volumes
	// as directories (the test bed's hostpath driver), that driver's data
	// directory: a PVC's files are then at HostPathDir/<its PV's
	// spec.csi.volumeHandle>, which local pipeline tasks read and write.
	// Empty (the default) for a real cluster, whose PVCs are mounted in pods.
	HostPathDir string `json:"hostPathDir,omitempty"`
	// RestoreMode of an in-place restore: "auto" (default: Trident's
	// TridentActionSnapshotRestore when the cluster serves it, else
	// "recreate"), "tasr", or "recreate" (delete the PVC and create it
	// again from the snapshot, as NetApp's DataOps Toolkit does).
	RestoreMode string `json:"restoreMode,omitempty"`
}

// ServingBackend: type "local" (processes behind a weighted gateway) or
// "kubernetes".
type ServingBackend struct {
	Type       string `json:"type"`
	Namespace  string `json:"namespace,omitempty"`
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Access is how type kubernetes reaches the pods and Services:
	// "cluster" ("" too: Service DNS names and pod IPs, for an agent that
	// runs in the cluster) or "apiserver" (through the API server's
	// services/proxy and pods/proxy subresources, for an agent outside it).
	Access string `json:"access,omitempty"`
	// Addr is the gateway's loopback listen address for type local.
	Addr string `json:"addr,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s", "5m").
type Duration struct{ time.Duration }
