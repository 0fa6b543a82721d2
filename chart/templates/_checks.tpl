{{- /*
  z2jh 4.4.0 copies hub.extraVolumes, extraVolumeMounts and extraEnv into the hub Deployment verbatim
  (no `tpl`), so the wiring of our ConfigMaps and Secrets into the hub is written literally in the
  `jupyterhub:` block. Lists in values replace rather than merge: an operator who adds one volume of
  their own silently drops ours. These checks turn such a hub — one that would crash at start or run
  without its package — into a `helm install` error naming the value to fix.
*/}}
{{- define "datalake-hub.checks" -}}
{{- $hub := (.Values.jupyterhub | default dict).hub | default dict }}
{{- $vols := dict }}
{{- range get $hub "extraVolumes" | default list }}{{ $_ := set $vols (toString .name) . }}{{ end }}
{{- $mounts := dict }}
{{- range get $hub "extraVolumeMounts" | default list }}{{ $_ := set $mounts (toString .name) . }}{{ end }}
{{- $see := "(chart/values.yaml shows the expected entries; lists in values replace the chart's, so copy them)" }}

{{- /* every volume we need, mounted */}}
{{- $needed := list "datalake-package" "datalake-settings" }}
{{- $profilesDir := "/etc/datalake/profiles" }}
{{- $dlProfiles := get .Values.datalake "profiles" | default dict }}
{{- if hasKey $dlProfiles "directory" }}{{ $profilesDir = $dlProfiles.directory }}{{ end }}
{{- if $profilesDir }}{{ $needed = append $needed "datalake-profiles" }}{{ end }}
{{- if .Values.secrets.iamClientSecret.name }}{{ $needed = append $needed "datalake-iam-client-secret" }}{{ end }}
{{- range $needed }}
{{- if not (hasKey $vols .) }}
{{- fail (printf "jupyterhub.hub.extraVolumes has no volume %q %s" . $see) }}
{{- end }}
{{- if not (hasKey $mounts .) }}
{{- fail (printf "jupyterhub.hub.extraVolumeMounts has no mount of volume %q %s" . $see) }}
{{- end }}
{{- end }}

{{- /* the package: right ConfigMap, right place, one item per file the chart ships */}}
{{- $pkg := get $vols "datalake-package" }}
{{- if ne (dig "configMap" "name" "" $pkg) (include "datalake-hub.package.fullname" .) }}
{{- fail (printf "jupyterhub.hub.extraVolumes[datalake-package].configMap.name must be %q" (include "datalake-hub.package.fullname" .)) }}
{{- end }}
{{- if ne (get (get $mounts "datalake-package") "mountPath" | trimSuffix "/") "/usr/local/etc/jupyterhub/hub_config" }}
{{- fail "jupyterhub.hub.extraVolumeMounts[datalake-package].mountPath must be /usr/local/etc/jupyterhub/hub_config (z2jh puts /usr/local/etc/jupyterhub on the hub's sys.path)" }}
{{- end }}
{{- $items := dict }}
{{- range (dig "configMap" "items" list $pkg) }}{{ $_ := set $items (toString .key) (toString .path) }}{{ end }}
{{- $files := .Files.Glob "files/hub_config/**" }}
{{- range $path, $_ := $files }}
{{- $rel := trimPrefix "files/hub_config/" $path }}
{{- if ne (get $items (replace "/" "--" $rel)) $rel }}
{{- fail (printf "hub_config/%s is missing from jupyterhub.hub.extraVolumes[datalake-package].configMap.items: run `make chart-files`" $rel) }}
{{- end }}
{{- end }}
{{- if ne (len $items) (len $files) }}
{{- fail (printf "jupyterhub.hub.extraVolumes[datalake-package].configMap.items lists %d files but the chart ships %d from hub_config/: run `make chart-files`" (len $items) (len $files)) }}
{{- end }}

{{- /* settings and profiles */}}
{{- if ne (dig "configMap" "name" "" (get $vols "datalake-settings")) (include "datalake-hub.settings.fullname" .) }}
{{- fail (printf "jupyterhub.hub.extraVolumes[datalake-settings].configMap.name must be %q" (include "datalake-hub.settings.fullname" .)) }}
{{- end }}
{{- if $profilesDir }}
{{- $want := include "datalake-hub.profiles.configMapName" . }}
{{- if ne (dig "configMap" "name" "" (get $vols "datalake-profiles")) $want }}
{{- fail (printf "jupyterhub.hub.extraVolumes[datalake-profiles].configMap.name must be %q (profileFiles.existingConfigMap or the chart's)" $want) }}
{{- end }}
{{- $m := get $mounts "datalake-profiles" }}
{{- if or (ne (trimSuffix "/" (toString (get $m "mountPath"))) (trimSuffix "/" $profilesDir)) (get $m "subPath") }}
{{- fail (printf "jupyterhub.hub.extraVolumeMounts[datalake-profiles] must mount the whole ConfigMap (no subPath, or edits never reach the hub) at datalake.profiles.directory %q" $profilesDir) }}
{{- end }}
{{- end }}

{{- /* the IAM client secret: the Secret named in `secrets`, at the file the settings name */}}
{{- with .Values.secrets.iamClientSecret.name }}
{{- $s := get $vols "datalake-iam-client-secret" }}
{{- if ne (dig "secret" "secretName" "" $s) . }}
{{- fail (printf "jupyterhub.hub.extraVolumes[datalake-iam-client-secret].secret.secretName is %q but secrets.iamClientSecret.name is %q: set both" (dig "secret" "secretName" "" $s) .) }}
{{- end }}
{{- $key := $.Values.secrets.iamClientSecret.key | default "client-secret" }}
{{- $file := dig "iam" "client_secret" "file" "/etc/datalake/secrets/iam-client-secret" ($.Values.datalake | default dict) }}
{{- if and $file (not (dig "iam" "client_secret" "env" "" ($.Values.datalake | default dict))) }}
{{- $found := false }}
{{- range (dig "secret" "items" list $s) }}
{{- if and (eq (toString .key) $key) (eq (toString .path) (base $file)) }}{{ $found = true }}{{ end }}
{{- end }}
{{- if not $found }}
{{- fail (printf "jupyterhub.hub.extraVolumes[datalake-iam-client-secret].secret.items must map key %q (secrets.iamClientSecret.key) to path %q" $key (base $file)) }}
{{- end }}
{{- if ne (trimSuffix "/" (toString (get (get $mounts "datalake-iam-client-secret") "mountPath"))) (dir $file) }}
{{- fail (printf "jupyterhub.hub.extraVolumeMounts[datalake-iam-client-secret].mountPath must be %q, the directory of datalake.iam.client_secret.file" (dir $file)) }}
{{- end }}
{{- end }}
{{- end }}

{{- /* the auth-state key: env from the Secret named in `secrets` */}}
{{- with .Values.secrets.authStateKey.name }}
{{- $ref := dict }}
{{- $env := get $hub "extraEnv" }}
{{- if kindIs "map" $env }}
{{- $ref = dig "JUPYTERHUB_CRYPT_KEY" "valueFrom" "secretKeyRef" dict $env }}
{{- else }}
{{- range $env | default list }}{{ if eq (get . "name") "JUPYTERHUB_CRYPT_KEY" }}{{ $ref = dig "valueFrom" "secretKeyRef" dict . }}{{ end }}{{ end }}
{{- end }}
{{- $key := $.Values.secrets.authStateKey.key | default "crypt-key" }}
{{- if or (ne (toString (get $ref "name")) .) (ne (toString (get $ref "key")) $key) }}
{{- fail (printf "jupyterhub.hub.extraEnv.JUPYTERHUB_CRYPT_KEY must read secretKeyRef {name: %s, key: %s} (secrets.authStateKey)" . $key) }}
{{- end }}
{{- end }}

{{- if not (dig "extraConfig" "datalake" "" $hub) }}
{{- fail "jupyterhub.hub.extraConfig.datalake must call the package: \"from hub_config.apply import apply_from_file; apply_from_file(c)\"" }}
{{- end }}
{{- end }}
