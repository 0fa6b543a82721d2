// Wrapper module: Traefik v3 (the proxy the dask-gateway chart deploys) from the Go module proxy.
// Traefik's go.mod replaces three dependencies with Containous forks and excludes one ambiguous
// module; a module's replace/exclude directives only apply when it is the main module, so
// `go install github.com/traefik/traefik/v3/cmd/traefik@v3.x` fails and this module repeats them.
// The version is the dask-gateway 2026.3.0 chart's (values.yaml: traefik.image.tag "3.3.5").
// The module zip ships webui/static with a placeholder file only, so the embedded dashboard is
// empty; the chart runs with the dashboard off, and nothing here serves it.
module datalakehub.local/traefik

go 1.24.0

require github.com/traefik/traefik/v3 v3.3.5

tool github.com/traefik/traefik/v3/cmd/traefik

replace (
	github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20200324110947-a37a7636d23e
	github.com/gorilla/mux => github.com/containous/mux v0.0.0-20220627093034-b2dd784e613f
	github.com/mailgun/minheap => github.com/containous/minheap v0.0.0-20190809180810-6e71eb837595
)

exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible
