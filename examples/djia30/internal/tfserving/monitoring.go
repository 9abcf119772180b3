package tfserving

import "fmt"

// DefaultMetricsPath is where TF Serving serves Prometheus metrics when the
// monitoring config enables them without a path
// (monitoring_config.proto's PrometheusConfig.path).
const DefaultMetricsPath = "/monitoring/prometheus/metrics"

// MonitoringConfig is the part of TF Serving's MonitoringConfig
// (tensorflow_serving/config/monitoring_config.proto, read from
// --monitoring_config_file in text format) this server uses.
type MonitoringConfig struct {
	// PrometheusEnable and PrometheusPath are prometheus_config { enable path }.
	PrometheusEnable bool
	PrometheusPath   string
}

// ParseMonitoringConfig parses the text format, e.g.
//
//	prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }
//
// Unknown fields are errors with the line number; a missing path is
// DefaultMetricsPath.
func ParseMonitoringConfig(text string) (MonitoringConfig, error) {
	p := &parser{}
	if err := p.lex(text); err != nil {
		return MonitoringConfig{}, fmt.Errorf("monitoring config: %w", err)
	}
	var c MonitoringConfig
	err := p.message(func(field string, line int) error {
		if field != "prometheus_config" {
			return fmt.Errorf("line %d: unknown field %q (want prometheus_config)", line, field)
		}
		return p.sub(func(field string, line int) error {
			switch field {
			case "enable":
				t, err := p.scalar('s')
				if err != nil {
					return err
				}
				switch t.text {
				case "true", "True", "t", "1":
					c.PrometheusEnable = true
				case "false", "False", "f", "0":
					c.PrometheusEnable = false
				default:
					return fmt.Errorf("line %d: enable: want true or false, got %q", t.line, t.text)
				}
			case "path":
				t, err := p.scalar('s')
				if err != nil {
					return err
				}
				c.PrometheusPath = t.text
			default:
				return fmt.Errorf("line %d: unknown field %q in prometheus_config (want enable or path)", line, field)
			}
			return nil
		})
	}, true)
	if err != nil {
		return MonitoringConfig{}, fmt.Errorf("monitoring config: %w", err)
	}
	if c.PrometheusPath == "" {
		c.PrometheusPath = DefaultMetricsPath
	}
	return c, nil
}
