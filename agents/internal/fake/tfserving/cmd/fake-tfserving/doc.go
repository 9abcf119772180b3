// Command fake-tfserving is a TF-Serving-compatible test server: it takes
// tensorflow_model_server's flags (--rest_api_port, --model_name,
// --model_base_path, --model_config_file, --file_system_poll_wait_seconds),
// serves every numeric version directory of the base path (or the versions
// and labels of the model config file) through the shared fake, prints
// "listening on 127.0.0.1:PORT" to stderr and stops gracefully on SIGTERM.
// A version directory may hold behavior.json ({"delay":"50ms","failEvery":2}).
//
// It is for tests only; it may import other fakes, helpers, agents/config,
// agents/records and backends' wire types, never an implementation, a stage
// or a command.
package main
