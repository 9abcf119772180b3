package tfserving

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/branchml/djia30/internal/model"
)

// InputName is the name of the model's single input tensor ("features",
// DT_FLOAT, shape [-1, F]).
const InputName = "features"

// DefaultSignature is the signature served when the request names none; its
// one output is "probability".
const DefaultSignature = model.DefaultSignature

// LabelSignature is the signature whose outputs are "probability" and "label".
const LabelSignature = model.LabelSignature

// PredictRequest is a decoded predict request body.
type PredictRequest struct {
	SignatureName string
	// Instances holds one row of F raw feature values per instance, already
	// rounded to float32 precision (the input tensor is DT_FLOAT).
	Instances [][]float64
	// Columnar is true for the "inputs" (columnar) format, whose response
	// key is "outputs"; false for "instances" (row format, "predictions").
	Columnar bool
}

// BadRequestError is a malformed predict request; the server answers 400
// with {"error": msg}.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }

func badf(format string, a ...any) error { return &BadRequestError{Msg: fmt.Sprintf(format, a...)} }

// DecodePredict decodes a TF Serving REST predict body for a model with
// features inputs per instance. Accepted shapes (see the TF Serving REST API):
//
//	{"signature_name": "...", "instances": [[f1..fF], ...]}          row format, list values
//	{"instances": [{"features": [f1..fF]}, ...]}                     row format, named input
//	{"inputs": {"features": [[f1..fF], ...]}}                        columnar, named input
//	{"inputs": [[f1..fF], ...]}                                       columnar, single input
//
// A single instance may also be given as a flat list in the columnar format
// ({"inputs": [f1..fF]}). Errors are *BadRequestError values.
func DecodePredict(body []byte, features int) (*PredictRequest, error) {
	var raw struct {
		SignatureName *string         `json:"signature_name"`
		Instances     json.RawMessage `json:"instances"`
		Inputs        json.RawMessage `json:"inputs"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return nil, badf("JSON Parse error: %v", err)
	}
	if dec.More() {
		return nil, badf("JSON Parse error: The document root must not be followed by other values.")
	}
	req := &PredictRequest{SignatureName: DefaultSignature}
	if raw.SignatureName != nil && *raw.SignatureName != "" {
		req.SignatureName = *raw.SignatureName
	}
	hasInst, hasIn := isSet(raw.Instances), isSet(raw.Inputs)
	switch {
	case hasInst && hasIn:
		return nil, badf("Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
	case !hasInst && !hasIn:
		return nil, badf("Missing 'inputs' or 'instances' key")
	case hasInst:
		var items []json.RawMessage
		if err := json.Unmarshal(raw.Instances, &items); err != nil {
			return nil, badf("Expecting 'instances' to be an list/array")
		}
		if len(items) == 0 {
			return nil, badf("Expecting 'instances' to be a non-empty list/array")
		}
		for i, it := range items {
			it = bytes.TrimSpace(it)
			if len(it) > 0 && it[0] == '{' {
				var obj map[string]json.RawMessage
				if err := json.Unmarshal(it, &obj); err != nil {
					return nil, badf("instance %d: %v", i, err)
				}
				v, ok := obj[InputName]
				if !ok || len(obj) != 1 {
					return nil, badf("instance %d: expecting exactly one named input %q", i, InputName)
				}
				it = v
			}
			row, err := decodeRow(it, features)
			if err != nil {
				return nil, badf("instance %d: %v", i, err)
			}
			req.Instances = append(req.Instances, row)
		}
	default:
		req.Columnar = true
		in := bytes.TrimSpace(raw.Inputs)
		if len(in) > 0 && in[0] == '{' {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(in, &obj); err != nil {
				return nil, badf("inputs: %v", err)
			}
			v, ok := obj[InputName]
			if !ok || len(obj) != 1 {
				return nil, badf("inputs: expecting exactly one named input %q", InputName)
			}
			in = bytes.TrimSpace(v)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(in, &items); err != nil {
			return nil, badf("inputs: expecting a list/array of instances of shape [-1, %d]", features)
		}
		if len(items) == 0 {
			return nil, badf("inputs: expecting a non-empty list/array")
		}
		if first := bytes.TrimSpace(items[0]); len(first) > 0 && first[0] != '[' {
			// a single flat instance
			row, err := decodeRow(in, features)
			if err != nil {
				return nil, badf("inputs: %v", err)
			}
			req.Instances = [][]float64{row}
			return req, nil
		}
		for i, it := range items {
			row, err := decodeRow(it, features)
			if err != nil {
				return nil, badf("inputs[%d]: %v", i, err)
			}
			req.Instances = append(req.Instances, row)
		}
	}
	return req, nil
}

func isSet(m json.RawMessage) bool {
	m = bytes.TrimSpace(m)
	return len(m) > 0 && !bytes.Equal(m, []byte("null"))
}

// decodeRow decodes a JSON list of exactly n numbers, rounded to float32.
func decodeRow(b json.RawMessage, n int) ([]float64, error) {
	var vals []json.RawMessage
	if err := json.Unmarshal(b, &vals); err != nil {
		return nil, fmt.Errorf("expecting a list of %d numbers, got %s", n, shortJSON(b))
	}
	if len(vals) != n {
		return nil, fmt.Errorf("expecting shape [-1, %d] but got an instance of %d values", n, len(vals))
	}
	row := make([]float64, n)
	for k, v := range vals {
		v = bytes.TrimSpace(v)
		if len(v) == 0 || !(v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) {
			return nil, fmt.Errorf("JSON Value: %s Type: %s is not of expected type: float", shortJSON(v), jsonType(v))
		}
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil && !isRangeErr(err) {
			return nil, fmt.Errorf("JSON Value: %s is not a valid float", shortJSON(v))
		}
		f32 := float32(f)
		if math.IsInf(float64(f32), 0) || math.IsNaN(float64(f32)) {
			return nil, fmt.Errorf("JSON Value: %s is out of range for type float", shortJSON(v))
		}
		row[k] = float64(f32)
	}
	return row, nil
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

func jsonType(v []byte) string {
	if len(v) == 0 {
		return "Null"
	}
	switch v[0] {
	case '"':
		return "String"
	case '[':
		return "Array"
	case '{':
		return "Object"
	case 't', 'f':
		return "Bool"
	case 'n':
		return "Null"
	}
	return "Number"
}

func shortJSON(b []byte) string {
	s := string(bytes.TrimSpace(b))
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

// EncodePredictions renders the response of the single-output signature
// serving_default, whose shapes TF Serving uses when a signature has one
// output: {"predictions": [[p], ...]} for the row format or
// {"outputs": [[p], ...]} for the columnar format, with each probability as
// a float32 value (the output tensor is DT_FLOAT [-1, 1]).
func EncodePredictions(probs []float64, columnar bool) []byte {
	b := make([]byte, 0, 16+len(probs)*16)
	if columnar {
		b = append(b, `{"outputs":`...)
	} else {
		b = append(b, `{"predictions":`...)
	}
	b = appendProbs(b, probs)
	return append(b, "}\n"...)
}

// EncodeLabeled renders the response of the two-output signature
// predict_label, keyed by output name as TF Serving does for a signature
// with several outputs (keys in name order): row format
// {"predictions": [{"label": l, "probability": [p]}, ...]}, columnar format
// {"outputs": {"label": [l, ...], "probability": [[p], ...]}}, where l is
// model.Label(p) (DT_INT64 [-1]) and p is float32 (DT_FLOAT [-1, 1]).
func EncodeLabeled(probs []float64, columnar bool) []byte {
	b := make([]byte, 0, 48+len(probs)*40)
	if columnar {
		b = append(b, `{"outputs":{"label":[`...)
		for i, p := range probs {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, model.Label(p), 10)
		}
		b = append(b, `],"probability":`...)
		b = appendProbs(b, probs)
		return append(b, "}}\n"...)
	}
	b = append(b, `{"predictions":[`...)
	for i, p := range probs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"label":`...)
		b = strconv.AppendInt(b, model.Label(p), 10)
		b = append(b, `,"probability":[`...)
		b = strconv.AppendFloat(b, float64(float32(p)), 'g', -1, 32)
		b = append(b, "]}"...)
	}
	return append(b, "]}\n"...)
}

// appendProbs appends [[p1],[p2],...] (float32 values).
func appendProbs(b []byte, probs []float64) []byte {
	b = append(b, '[')
	for i, p := range probs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendFloat(b, float64(float32(p)), 'g', -1, 32)
		b = append(b, ']')
	}
	return append(b, ']')
}
