// Package backends picks the storage backend named by
// backends.storage.type of branchml.yaml: "local" (directories under the
// state directory, the default) or "trident" (PVCs and CSI VolumeSnapshots).
//
// As the factory of the storage backend it imports only packages of that
// concern (agents/backends/storage/...), agents/records, agents/config and
// helpers; never a stage, a command or another concern.
package storagefactory
