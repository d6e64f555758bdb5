// Command gpu-device-plugin advertises N fake `nvidia.com/gpu` devices to one kubelet through the
// kubelet's device-plugin API (v1beta1), the same API NVIDIA's k8s-device-plugin uses. The node then
// shows `nvidia.com/gpu` capacity and allocatable, the scheduler counts it, and containers that are
// allocated devices get NVIDIA_VISIBLE_DEVICES naming them, as on a GPU node. No GPU is touched:
// this is how `make cluster` gives its GPU worker schedulable GPUs on a machine without any.
//
// It registers through the kubelet's plugin watcher (a socket in <kubelet --root-dir>/plugins_registry)
// rather than the fixed /var/lib/kubelet/device-plugins/kubelet.sock, which two kubelets on one host
// would share; the kubelet finds the socket again after it restarts.
//
// Usage: gpu-device-plugin --registry-dir /var/lib/kubelet/plugins_registry --count 2
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	devices []*pluginapi.Device
	stop    chan struct{}
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the device list once and keeps the stream open until the plugin stops.
func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	select {
	case <-p.stop:
	case <-stream.Context().Done():
	}
	return nil
}

func (p *plugin) GetPreferredAllocation(context.Context, *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	return &pluginapi.PreferredAllocationResponse{}, nil
}

// Allocate tells each container which devices it got, the way NVIDIA's plugin does (by environment).
func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, container := range req.ContainerRequests {
		ids := ""
		for i, id := range container.DevicesIds {
			if i > 0 {
				ids += ","
			}
			ids += id
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": ids, "AIFN_FAKE_GPU": "true"},
		})
	}
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

// registration answers the kubelet's plugin watcher, which finds our socket in its plugins_registry
// directory (one per kubelet --root-dir, so two kubelets on one host each find their own plugins).
type registration struct {
	registerapi.UnimplementedRegistrationServer
	resource, endpoint string
}

func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.DevicePlugin,
		Name:              r.resource,
		Endpoint:          r.endpoint,
		SupportedVersions: []string{pluginapi.Version},
	}, nil
}

func (r *registration) NotifyRegistrationStatus(_ context.Context, status *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if status.PluginRegistered {
		log.Printf("the kubelet registered %s", r.resource)
	} else {
		log.Printf("the kubelet refused %s: %s", r.resource, status.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

func main() {
	dir := flag.String("registry-dir", "/var/lib/kubelet/plugins_registry", "the kubelet's plugins_registry directory (<kubelet --root-dir>/plugins_registry)")
	count := flag.Int("count", 2, "how many devices to advertise")
	resource := flag.String("resource", "nvidia.com/gpu", "the extended resource name")
	flag.Parse()
	if *count < 1 {
		log.Fatalf("--count must be at least 1, got %d", *count)
	}
	devices := make([]*pluginapi.Device, *count)
	for i := range devices {
		devices[i] = &pluginapi.Device{ID: fmt.Sprintf("fake-gpu-%d", i), Health: pluginapi.Healthy}
	}
	if err := os.MkdirAll(*dir, 0o750); err != nil {
		log.Fatalf("create %s: %v", *dir, err)
	}
	// One socket serves both: the registration service for the plugin watcher and the device plugin.
	socket := filepath.Join(*dir, "aifn-fake-gpu.sock")
	_ = os.Remove(socket)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		log.Fatalf("listen on %s: %v", socket, err)
	}
	p := &plugin{devices: devices, stop: make(chan struct{})}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, p)
	registerapi.RegisterRegistrationServer(server, &registration{resource: *resource, endpoint: socket})
	go func() {
		if err := server.Serve(listener); err != nil {
			log.Fatalf("serve: %v", err)
		}
	}()
	log.Printf("advertising %d %s devices at %s", *count, *resource, socket)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	<-signals
	close(p.stop)
	server.Stop()
	_ = os.Remove(socket)
}
