package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// document is one object of the input as JSON, with where it came from.
type document struct {
	origin string
	json   []byte
}

// readSource reads every YAML or JSON document of a file ("-" is standard input).
// A `kind: List` document contributes its items.
func readSource(source string, stdin io.Reader) ([]document, error) {
	var in io.Reader = stdin
	name := "stdin"
	if source != "-" {
		f, err := os.Open(source)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in, name = f, source
	}

	reader := utilyaml.NewYAMLReader(bufio.NewReader(in))
	var docs []document
	for index := 0; ; index++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, index, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		asJSON, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, index, err)
		}
		if bytes.Equal(bytes.TrimSpace(asJSON), []byte("null")) {
			continue
		}
		origin := fmt.Sprintf("%s#%d", name, index)
		items, err := listItems(asJSON)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", origin, err)
		}
		if items == nil {
			docs = append(docs, document{origin: origin, json: asJSON})
			continue
		}
		for i, item := range items {
			docs = append(docs, document{origin: fmt.Sprintf("%s.items[%d]", origin, i), json: item})
		}
	}
}

// listItems returns the items of a `kind: List` document, or nil for any other document.
func listItems(asJSON []byte) ([][]byte, error) {
	var list struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(asJSON, &list); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if list.Kind != "List" {
		return nil, nil
	}
	items := make([][]byte, 0, len(list.Items))
	for _, item := range list.Items {
		items = append(items, []byte(item))
	}
	return items, nil
}

// stripComments drops comment-only lines so a document of comments counts as empty.
func stripComments(raw []byte) []byte {
	var kept [][]byte
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			kept = append(kept, line)
		}
	}
	return bytes.Join(kept, []byte("\n"))
}
