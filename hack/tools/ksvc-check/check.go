package main

import (
	"context"
	"fmt"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	knativejson "knative.dev/pkg/webhook/json"
	"knative.dev/serving/pkg/apis/config"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	asconfig "knative.dev/serving/pkg/autoscaler/config"
)

// knativeObject is what Knative's defaulting and validation webhooks call on a resource.
type knativeObject interface {
	apis.Defaultable
	apis.Validatable
}

// servingKinds are the serving.knative.dev/v1 kinds the checker understands.
var servingKinds = map[string]func() knativeObject{
	"Service":       func() knativeObject { return &servingv1.Service{} },
	"Configuration": func() knativeObject { return &servingv1.Configuration{} },
	"Route":         func() knativeObject { return &servingv1.Route{} },
	"Revision":      func() knativeObject { return &servingv1.Revision{} },
}

// checker holds the Knative configuration that the webhook would read from its ConfigMaps.
type checker struct {
	cfg                   *config.Config
	disallowUnknownFields bool
}

// result is the outcome for one document of the input.
type result struct {
	label    string
	skipped  bool
	note     string
	errors   []string
	warnings []string
}

func newChecker(features, autoscaler, defaults map[string]string, disallowUnknownFields bool) (*checker, error) {
	f, err := config.NewFeaturesConfigFromMap(features)
	if err != nil {
		return nil, fmt.Errorf("--features: %w", err)
	}
	a, err := asconfig.NewConfigFromMap(autoscaler)
	if err != nil {
		return nil, fmt.Errorf("--autoscaler: %w", err)
	}
	d, err := config.NewDefaultsConfigFromMap(defaults)
	if err != nil {
		return nil, fmt.Errorf("--defaults: %w", err)
	}
	return &checker{cfg: &config.Config{Defaults: d, Features: f, Autoscaler: a}, disallowUnknownFields: disallowUnknownFields}, nil
}

// check defaults and validates one JSON document the way Knative's webhooks do on create.
func (c *checker) check(d document) result {
	var meta struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name         string `json:"name"`
			GenerateName string `json:"generateName"`
			Namespace    string `json:"namespace"`
		} `json:"metadata"`
	}
	label := d.origin
	if err := knativejson.Unmarshal(d.json, &meta); err != nil {
		return result{label: label, errors: []string{fmt.Sprintf("not a Kubernetes object: %v", err)}}
	}
	name := meta.Metadata.Name
	if name == "" {
		name = meta.Metadata.GenerateName + "*"
	}
	if meta.Metadata.Namespace != "" {
		name = meta.Metadata.Namespace + "/" + name
	}
	label = fmt.Sprintf("%s %s (%s)", meta.Kind, name, d.origin)

	newObject, known := servingKinds[meta.Kind]
	if meta.APIVersion != servingv1.SchemeGroupVersion.String() || !known {
		return result{label: label, skipped: true, note: fmt.Sprintf("%s %s is not a serving.knative.dev/v1 Service, Configuration, Route or Revision", meta.APIVersion, meta.Kind)}
	}

	obj := newObject()
	if err := knativejson.Decode(d.json, obj, c.disallowUnknownFields); err != nil {
		return result{label: label, errors: []string{fmt.Sprintf("cannot decode: %v", err)}}
	}

	// The same context the webhooks build for a CREATE request.
	ctx := config.ToContext(context.Background(), c.cfg)
	ctx = apis.WithinCreate(ctx)
	ctx = apis.WithUserInfo(ctx, &authenticationv1.UserInfo{Username: "ksvc-check"})
	obj.SetDefaults(ctx)

	r := result{label: label}
	if fe := obj.Validate(ctx); fe != nil {
		r.errors = splitLines(fe.Filter(apis.ErrorLevel))
		r.warnings = splitLines(fe.Filter(apis.WarningLevel))
	}
	return r
}

// splitLines turns Knative's merged FieldError text into one entry per error.
func splitLines(fe *apis.FieldError) []string {
	if fe == nil {
		return nil
	}
	var out []string
	for _, e := range fe.WrappedErrors() {
		if text := strings.TrimSpace(e.Error()); text != "" {
			out = append(out, strings.ReplaceAll(text, "\n", " | "))
		}
	}
	return out
}
