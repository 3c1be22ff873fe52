{{/*
airlock.name: the chart name, or .Values.nameOverride. Truncated to 63 characters because Kubernetes
label values (and DNS-1123 labels, which Service names must be) are limited to 63; the trailing "-" a
cut can leave is trimmed because names must end with an alphanumeric character.
*/}}
{{- define "airlock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
airlock.fullname: the base name of every object: .Values.fullnameOverride, else "<release>-<name>",
else just the release name when it already contains the chart name. Kubernetes names of Services (and
label values) are DNS-1123 labels of at most 63 characters; component objects append a suffix, the
longest being "-gateway-admin" (14 characters), so the base is truncated to 63 - 14 = 49 characters
and every derived name stays valid. A cut can leave a trailing "-", which names may not end with, so
it is trimmed. Two releases whose names agree in their first 49 characters would collide: keep
release names short.
*/}}
{{- define "airlock.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 49 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 49 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 49 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
airlock.chart: "name-version" for the helm.sh/chart label ("+" is not allowed in label values).
*/}}
{{- define "airlock.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
airlock.selectorLabels: the labels Deployments select on. Never add anything that may change between
upgrades here: a Deployment's selector is immutable. Takes a dict {ctx, component}.
*/}}
{{- define "airlock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "airlock.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
airlock.labels: every object's labels: the selector labels plus version, managed-by, helm.sh/chart and
.Values.commonLabels. Takes a dict {ctx, component}.
*/}}
{{- define "airlock.labels" -}}
helm.sh/chart: {{ include "airlock.chart" .ctx }}
{{ include "airlock.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: airlock
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
airlock.image: "registry/repository:tag@digest" from an image dict {registry, repository, tag, digest};
tag defaults to the chart's appVersion; a digest pins the image whatever the tag says. Takes a dict
{image, ctx}.
*/}}
{{- define "airlock.image" -}}
{{- $repo := .image.repository }}
{{- if .image.registry }}{{ $repo = printf "%s/%s" .image.registry .image.repository }}{{ end }}
{{- $tag := default .ctx.Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" $repo $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{/* Names of the component objects. */}}
{{- define "airlock.controllerName" -}}{{ include "airlock.fullname" . }}-controller{{- end }}
{{- define "airlock.gatewayName" -}}{{ include "airlock.fullname" . }}-gateway{{- end }}
{{- define "airlock.gatewayAdminName" -}}{{ include "airlock.fullname" . }}-gateway-admin{{- end }}
{{- /* The controller's internal port for the gateways' approval claims (ClusterIP only). */}}
{{- define "airlock.approvalsName" -}}{{ include "airlock.fullname" . }}-approvals{{- end }}
{{- define "airlock.approvalsUrl" -}}
http://{{ include "airlock.approvalsName" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:{{ .Values.approvals.internalPort }}
{{- end }}
{{- define "airlock.sandboxName" -}}{{ include "airlock.fullname" . }}-sandbox{{- end }}
{{- define "airlock.policiesName" -}}{{ include "airlock.fullname" . }}-policies{{- end }}

{{/*
The installation CA's Secret (release namespace): the chart's "<fullname>-ca", created empty and filled
by the controller, or tls.existingCaSecret. The trust bundle ConfigMap lives in the sandbox namespace.
*/}}
{{- define "airlock.caSecretName" -}}
{{- default (printf "%s-ca" (include "airlock.fullname" .)) .Values.tls.existingCaSecret }}
{{- end }}
{{- define "airlock.caBundleName" -}}{{ include "airlock.fullname" . }}-ca-bundle{{- end }}

{{/* The Secret holding the API and gateway admin tokens (an existing one when named). */}}
{{- define "airlock.secretName" -}}
{{- default (printf "%s-tokens" (include "airlock.fullname" .)) .Values.tokens.existingSecret }}
{{- end }}

{{/* ServiceAccount names. */}}
{{- define "airlock.controllerServiceAccountName" -}}
{{- default (include "airlock.controllerName" .) .Values.controller.serviceAccount.name }}
{{- end }}
{{- define "airlock.gatewayServiceAccountName" -}}
{{- default (include "airlock.gatewayName" .) .Values.gateway.serviceAccount.name }}
{{- end }}

{{/*
OAuth2 refresh-token state shared by the gateway replicas (docs/credentials.md "Several replicas"):
"true" when gateway.oauth2RefreshState is kubernetes, or auto with more than one replica and credential
Secrets to read (refresh tokens come from them on Kubernetes).
*/}}
{{- define "airlock.oauth2StateEnabled" -}}
{{- $m := .Values.gateway.oauth2RefreshState -}}
{{- if or (eq $m "kubernetes") (and (eq $m "auto") (gt (int .Values.gateway.replicas) 1) (not (empty .Values.gateway.credentialSecrets))) -}}
true
{{- end -}}
{{- end }}
{{- define "airlock.oauth2StateName" -}}{{ include "airlock.gatewayName" . }}-oauth2-state{{- end }}

{{/* The `airlock.io/instance` label value on sandbox objects: the release name, kept apart per install. */}}
{{- define "airlock.instance" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
airlock.policyVolume: the volume holding model.conf, policy.csv and tests/. ConfigMap keys cannot hold
"/", so files under tests/ are stored as "tests__<name>" and mapped back to tests/<name> here.
*/}}
{{- define "airlock.policyVolume" -}}
{{- if eq .Values.policies.source "git" }}
- name: policies
  emptyDir:
    sizeLimit: 64Mi
{{- with .Values.policies.git.caSecret.name }}
- name: git-ca
  secret:
    secretName: {{ . }}
{{- end }}
{{- else }}
- name: policies
  configMap:
    name: {{ default (include "airlock.policiesName" .) .Values.policies.existingConfigMap }}
    {{- if ne .Values.policies.source "existingConfigMap" }}
    items:
      {{- range $key, $_ := (include "airlock.policyFiles" . | fromYaml) }}
      - key: {{ $key }}
        path: {{ $key | replace "__" "/" }}
      {{- end }}
    {{- end }}
{{- end }}
{{- end }}

{{/*
airlock.policyFiles: the policy files as a YAML map of ConfigMap key -> content: files/policies/**
(a link to the repository's policies/ directory) overlaid with .Values.policies.files.
*/}}
{{- define "airlock.policyFiles" -}}
{{- $files := dict }}
{{- range $path, $_ := .Files.Glob "files/policies/**" }}
{{- $rel := trimPrefix "files/policies/" $path }}
{{- $_ := set $files ($rel | replace "/" "__") ($.Files.Get $path) }}
{{- end }}
{{- range $rel, $content := .Values.policies.files }}
{{- $_ := set $files ($rel | replace "/" "__") $content }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/* The directory the policy store reads (git-sync publishes the checkout through a symlink). */}}
{{- define "airlock.policyDir" -}}
{{- if eq .Values.policies.source "git" }}/etc/airlock/policies/current{{ with .Values.policies.git.path }}/{{ . }}{{ end }}{{ else }}/etc/airlock/policies{{ end }}
{{- end }}

{{/*
airlock.gitSync: a sync container (policies.source: git; policies.git.syncer: airlock runs `airlock
policy sync` from the Airlock image, git-sync the upstream image) publishing the checkout at
/etc/airlock/policies/current through an atomically swapped symlink. Takes a dict {ctx, oneTime}:
oneTime (the init container) makes the first checkout before the main container starts.
*/}}
{{- define "airlock.gitSync" -}}
{{- $ctx := .ctx }}
{{- $g := $ctx.Values.policies.git }}
- name: {{ if .oneTime }}git-sync-init{{ else }}git-sync{{ end }}
  {{- if eq $g.syncer "git-sync" }}
  image: {{ include "airlock.image" (dict "image" $g.image "ctx" $ctx) }}
  imagePullPolicy: {{ $g.image.pullPolicy }}
  {{- else }}
  {{- /* syncer: airlock — `airlock policy sync` (src/policy/git-sync.ts), same arguments and layout. */}}
  image: {{ include "airlock.image" (dict "image" $ctx.Values.image "ctx" $ctx) }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  command: [node, /app/dist/cli/main.js, policy, sync]
  {{- end }}
  args:
    - --repo={{ $g.repository }}
    - --ref={{ $g.ref }}
    - --root=/etc/airlock/policies
    - --link=current
    - --period={{ $g.periodSeconds }}s
    - --depth=1
    {{- if .oneTime }}
    - --one-time
    {{- end }}
  {{- with $g.credentialsSecret }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  {{- if $g.caSecret.name }}
  env:
    - name: GIT_SSL_CAINFO
      value: /etc/airlock/git-ca/{{ $g.caSecret.key }}
  {{- end }}
  securityContext:
    {{- toYaml $ctx.Values.containerSecurityContext | nindent 4 }}
  resources:
    {{- toYaml $g.resources | nindent 4 }}
  volumeMounts:
    - name: policies
      mountPath: /etc/airlock/policies
    - name: tmp
      mountPath: /tmp
    {{- if $g.caSecret.name }}
    - name: git-ca
      mountPath: /etc/airlock/git-ca
      readOnly: true
    {{- end }}
{{- end }}
