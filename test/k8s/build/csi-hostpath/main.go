// Command csi-hostpath is the CSI driver of branchml's Kubernetes test bed:
// volumes are directories under --datadir, snapshots are read-only copies of
// them, and a volume created from a snapshot (or from another volume) starts
// as a copy of it. It speaks the CSI spec (Identity, Controller and Node
// services) on a unix socket to the kubernetes-csi sidecars
// (external-provisioner, csi-snapshotter) exactly as a storage vendor's
// driver does, so the storage backend meets real PVCs, PersistentVolumes,
// VolumeSnapshots and VolumeSnapshotContents made by the real controllers.
//
// Layout of --datadir (the same as kubernetes-csi's csi-driver-host-path for
// volumes, which the module proxy does not serve):
//
//	<datadir>/<volume-id>/            the volume's files (volume ID = the provisioner's PV name)
//	<datadir>/.snapshots/<snap-id>/   a snapshot's files
//	<datadir>/.meta/{volumes,snapshots}/<id>.json   name, size, source, time
//
// Fault injection for tests: when a volume's directory holds a file named
// .csi-fail-snapshot, CreateSnapshot of it fails with codes.Internal and the
// file's content as message (as a storage system's error would), until the
// file is removed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// FailSnapshotFile, present in a volume, makes its snapshots fail.
const FailSnapshotFile = ".csi-fail-snapshot"

const defaultCapacity = 1 << 30

type meta struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Bytes    int64     `json:"bytes"`
	Source   string    `json:"source,omitempty"` // snapshot: the volume; volume: "snapshot:<id>" or "volume:<id>"
	Created  time.Time `json:"created"`
	Readonly bool      `json:"readonly,omitempty"`
}

type driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	name, node, dir string
	mu              sync.Mutex
}

var validID = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,252}$`)

func main() {
	endpoint := flag.String("endpoint", "", "unix:///path/to/csi.sock")
	name := flag.String("drivername", "hostpath.csi.branchml.dev", "the CSI driver name")
	node := flag.String("nodeid", "node-1", "the node ID reported by NodeGetInfo")
	dir := flag.String("datadir", "", "where volumes and snapshots are kept")
	regDir := flag.String("kubelet-registration-dir", "", "the kubelet's plugins_registry dir: when set, register the driver with the kubelet there (as node-driver-registrar does)")
	flag.Parse()
	sock, ok := strings.CutPrefix(*endpoint, "unix://")
	if !ok || *dir == "" {
		log.Fatal("usage: csi-hostpath --endpoint unix:///path --datadir DIR [--drivername NAME] [--nodeid ID]")
	}
	d := &driver{name: *name, node: *node, dir: *dir}
	for _, sub := range []string{".snapshots", ".meta/volumes", ".meta/snapshots"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o755); err != nil {
			log.Fatal(err)
		}
	}
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err != nil {
			log.Printf("%s: %v", info.FullMethod, err)
		}
		return resp, err
	}))
	csi.RegisterIdentityServer(srv, d)
	csi.RegisterControllerServer(srv, d)
	csi.RegisterNodeServer(srv, d)
	var reg *grpc.Server
	if *regDir != "" {
		if reg, err = register(*regDir, d.name, sock); err != nil {
			log.Fatal(err)
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		if reg != nil {
			reg.Stop()
		}
		srv.Stop()
	}()
	log.Printf("%s serving on %s, data in %s", d.name, sock, d.dir)
	if err := srv.Serve(l); err != nil {
		log.Fatal(err)
	}
}

// Identity

func (d *driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.name, VendorVersion: "1.0.0"}, nil
}

func (d *driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{Type: &csi.PluginCapability_Service_{
		Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}}}}}, nil
}

func (d *driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

// Controller

func (d *driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, c := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME, csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS, csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *driver) metaPath(kind, id string) string {
	return filepath.Join(d.dir, ".meta", kind, id+".json")
}

func (d *driver) volPath(id string) string  { return filepath.Join(d.dir, id) }
func (d *driver) snapPath(id string) string { return filepath.Join(d.dir, ".snapshots", id) }

func (d *driver) load(kind, id string) (*meta, error) {
	if !validID.MatchString(id) {
		return nil, status.Errorf(codes.NotFound, "%s %q: no such ID", kind, id)
	}
	raw, err := os.ReadFile(d.metaPath(kind, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.NotFound, "%s %s not found", strings.TrimSuffix(kind, "s"), id)
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	var m meta
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, status.Errorf(codes.Internal, "%s: %v", d.metaPath(kind, id), err)
	}
	return &m, nil
}

func (d *driver) save(kind string, m *meta) error {
	raw, _ := json.Marshal(m)
	p := d.metaPath(kind, m.ID)
	if err := os.WriteFile(p+".tmp", raw, 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

func (d *driver) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	id := req.GetName()
	if !validID.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument, "volume name %q: want lower-case letters, digits, '-' and '.'", id)
	}
	for _, c := range req.GetVolumeCapabilities() {
		if c.GetBlock() != nil {
			return nil, status.Error(codes.InvalidArgument, "block volumes are not supported")
		}
	}
	bytes := req.GetCapacityRange().GetRequiredBytes()
	if bytes == 0 {
		bytes = req.GetCapacityRange().GetLimitBytes()
	}
	if bytes == 0 {
		bytes = defaultCapacity
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	src := req.GetVolumeContentSource()
	want := ""
	from := ""
	if s := src.GetSnapshot(); s != nil {
		sm, err := d.load("snapshots", s.GetSnapshotId())
		if err != nil {
			return nil, err
		}
		if bytes < sm.Bytes {
			return nil, status.Errorf(codes.OutOfRange, "requested %d bytes, but snapshot %s needs %d", bytes, sm.ID, sm.Bytes)
		}
		want, from = "snapshot:"+sm.ID, d.snapPath(sm.ID)
	} else if v := src.GetVolume(); v != nil {
		vm, err := d.load("volumes", v.GetVolumeId())
		if err != nil {
			return nil, err
		}
		if bytes < vm.Bytes {
			return nil, status.Errorf(codes.OutOfRange, "requested %d bytes, but volume %s has %d", bytes, vm.ID, vm.Bytes)
		}
		want, from = "volume:"+vm.ID, d.volPath(vm.ID)
	}
	if m, err := d.load("volumes", id); err == nil {
		if m.Bytes < bytes || m.Source != want {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with %d bytes from %q", id, m.Bytes, m.Source)
		}
		return &csi.CreateVolumeResponse{Volume: d.volume(m, src)}, nil
	}
	tmp := d.volPath(id) + ".tmp"
	os.RemoveAll(tmp)
	var err error
	if from != "" {
		err = copyTree(from, tmp)
	} else {
		err = os.MkdirAll(tmp, 0o777)
	}
	if err == nil {
		err = os.Chmod(tmp, 0o777)
	}
	if err == nil {
		os.RemoveAll(d.volPath(id))
		err = os.Rename(tmp, d.volPath(id))
	}
	m := &meta{ID: id, Name: id, Bytes: bytes, Source: want, Created: time.Now().UTC()}
	if err == nil {
		err = d.save("volumes", m)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.CreateVolumeResponse{Volume: d.volume(m, src)}, nil
}

func (d *driver) volume(m *meta, src *csi.VolumeContentSource) *csi.Volume {
	return &csi.Volume{VolumeId: m.ID, CapacityBytes: m.Bytes, ContentSource: src}
}

func (d *driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if !validID.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument, "volume ID %q", id)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.RemoveAll(d.volPath(id)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.Remove(d.metaPath("volumes", id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (d *driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.load("volumes", req.GetVolumeId()); err != nil {
		return nil, err
	}
	for _, c := range req.GetVolumeCapabilities() {
		if c.GetBlock() != nil {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: "block volumes are not supported"}, nil
		}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext: req.GetVolumeContext(), VolumeCapabilities: req.GetVolumeCapabilities(), Parameters: req.GetParameters()}}, nil
}

func (d *driver) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	id, src := req.GetName(), req.GetSourceVolumeId()
	if !validID.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument, "snapshot name %q: want lower-case letters, digits, '-' and '.'", id)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if m, err := d.load("snapshots", id); err == nil {
		if m.Source != src {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists of volume %s, not %s", id, m.Source, src)
		}
		return &csi.CreateSnapshotResponse{Snapshot: snapshot(m)}, nil
	}
	vm, err := d.load("volumes", src)
	if err != nil {
		return nil, err
	}
	if msg, err := os.ReadFile(filepath.Join(d.volPath(src), FailSnapshotFile)); err == nil {
		return nil, status.Error(codes.Internal, strings.TrimSpace(string(msg)))
	}
	tmp := d.snapPath(id) + ".tmp"
	os.RemoveAll(tmp)
	err = copyTree(d.volPath(src), tmp)
	if err == nil {
		err = os.Rename(tmp, d.snapPath(id))
	}
	m := &meta{ID: id, Name: id, Bytes: vm.Bytes, Source: src, Created: time.Now().UTC(), Readonly: true}
	if err == nil {
		err = d.save("snapshots", m)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.CreateSnapshotResponse{Snapshot: snapshot(m)}, nil
}

func snapshot(m *meta) *csi.Snapshot {
	return &csi.Snapshot{SnapshotId: m.ID, SourceVolumeId: m.Source, SizeBytes: m.Bytes, CreationTime: timestamppb.New(m.Created), ReadyToUse: true}
}

func (d *driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if !validID.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument, "snapshot ID %q", id)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.RemoveAll(d.snapPath(id)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.Remove(d.metaPath("snapshots", id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (d *driver) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*csi.ListSnapshotsResponse_Entry
	if id := req.GetSnapshotId(); id != "" {
		if m, err := d.load("snapshots", id); err == nil && (req.GetSourceVolumeId() == "" || m.Source == req.GetSourceVolumeId()) {
			out = append(out, &csi.ListSnapshotsResponse_Entry{Snapshot: snapshot(m)})
		}
		return &csi.ListSnapshotsResponse{Entries: out}, nil
	}
	ents, err := os.ReadDir(filepath.Join(d.dir, ".meta", "snapshots"))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		if m, err := d.load("snapshots", id); err == nil && (req.GetSourceVolumeId() == "" || m.Source == req.GetSourceVolumeId()) {
			out = append(out, &csi.ListSnapshotsResponse_Entry{Snapshot: snapshot(m)})
		}
	}
	return &csi.ListSnapshotsResponse{Entries: out}, nil
}

// Kubelet plugin registration (k8s.io/kubelet pluginregistration v1, the
// part of node-driver-registrar that the kubelet talks to; the module proxy
// does not serve node-driver-registrar): a Registration service on
// <dir>/<driver>-reg.sock, which the kubelet's plugin watcher finds, asks
// for the CSI endpoint and versions, and answers with the outcome.

type registration struct {
	registerapi.UnimplementedRegistrationServer
	name, endpoint string
}

func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{Type: registerapi.CSIPlugin, Name: r.name, Endpoint: r.endpoint, SupportedVersions: []string{"1.0.0"}}, nil
}

func (r *registration) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if st.PluginRegistered {
		log.Printf("registered with the kubelet as %s", r.name)
	} else {
		log.Printf("the kubelet refused the registration of %s: %s", r.name, st.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// register serves the registration socket of driver name in dir; endpoint
// is the CSI socket the kubelet is to dial.
func register(dir, name, endpoint string) (*grpc.Server, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, name+"-reg.sock")
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("registration socket: %w", err)
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, &registration{name: name, endpoint: endpoint})
	go func() {
		if err := srv.Serve(l); err != nil {
			log.Printf("registration socket %s: %v", sock, err)
		}
	}()
	log.Printf("registration socket %s", sock)
	return srv, nil
}

// Node (used when a kubelet runs pods with these volumes)

func (d *driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.node}, nil
}

func (d *driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{}, nil
}

func (d *driver) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if target == "" {
		return nil, status.Error(codes.InvalidArgument, "no target path")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.load("volumes", id); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if mounted(target) {
		return &csi.NodePublishVolumeResponse{}, nil
	}
	if err := syscall.Mount(d.volPath(id), target, "", syscall.MS_BIND, ""); err != nil {
		return nil, status.Errorf(codes.Internal, "bind-mount %s on %s: %v", d.volPath(id), target, err)
	}
	if req.GetReadonly() {
		if err := syscall.Mount("", target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			syscall.Unmount(target, 0)
			return nil, status.Errorf(codes.Internal, "remount %s read-only: %v", target, err)
		}
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

func (d *driver) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	target := req.GetTargetPath()
	if mounted(target) {
		if err := syscall.Unmount(target, 0); err != nil {
			return nil, status.Errorf(codes.Internal, "unmount %s: %v", target, err)
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// mounted reports whether p is a mount point (listed in /proc/self/mountinfo).
func mounted(p string) bool {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == p {
			return true
		}
	}
	return false
}

// copyTree copies the regular files, directories and symlinks of src into
// dst (created), keeping modes.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case e.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case e.Type().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		}
		return fmt.Errorf("%s: not a regular file, directory or symlink", p)
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
