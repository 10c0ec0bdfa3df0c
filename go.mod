module github.com/moreh-io/moreh

go 1.26.8

require (
	github.com/hanwen/go-fuse/v2 v2.12.1
	github.com/spf13/pflag v1.1.0
	go.etcd.io/bbolt v1.5.0
)

require (
	github.com/NVIDIA/go-nvml v0.13.4-1 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
