package runnertest

import "strings"

// TrainMetrics is the metrics.json TrainSpec's train task writes (the shape
// of examples/djia30's metrics.json, trimmed).
const TrainMetrics = `{"model_name":"djia30","train":{"accuracy":0.61,"auc":0.66,"log_loss":0.65,"rows":1000},"validation":{"accuracy":0.55,"auc":0.58,"log_loss":0.69,"rows":250},"test":{"accuracy":0.53,"auc":0.54,"log_loss":0.7,"rows":250},"baselines":{"always_bullish":{"train":{"accuracy":0.52,"auc":0.5,"log_loss":0.69,"rows":1000},"validation":{"accuracy":0.53,"auc":0.5,"log_loss":0.69,"rows":250},"test":{"accuracy":0.51,"auc":0.5,"log_loss":0.69,"rows":250}}}}`

// TrainSpec is a composed KFP v2 IR in the shape of the example pipeline:
// prepare-data (writes a dataset artifact from the data_path parameter) then
// train (writes the model directory <model_base_path>/<model_version>/ and
// the metrics artifact with TrainMetrics). When failTrain is set the train
// task exits 3 after printing two lines. A second YAML document (a platform
// spec) follows, as the kf-pipeline stage composes it.
func TrainSpec(image string, failTrain bool) []byte {
	train := `        - train
        - "{{$.inputs.parameters['model_base_path']}}/{{$.inputs.parameters['model_version']}}"
        - "{{$.outputs.artifacts['metrics'].path}}"
        - '` + TrainMetrics + `'
        - "{{$.inputs.artifacts['dataset'].path}}"`
	if failTrain {
		train = `        - fail
        - "3"`
	}
	s := `# composed by a test
pipelineInfo:
  name: djia30-sentiment
schemaVersion: 2.1.0
sdkVersion: kfp-2.7.0
root:
  inputDefinitions:
    parameters:
      data_path: {parameterType: STRING}
      model_base_path: {parameterType: STRING}
      model_version: {parameterType: NUMBER_INTEGER}
      epochs: {parameterType: NUMBER_INTEGER, defaultValue: 30}
      learning_rate: {parameterType: NUMBER_DOUBLE, defaultValue: 0.001}
  dag:
    tasks:
      prepare-data:
        taskInfo: {name: prepare-data}
        componentRef: {name: comp-prepare-data}
        inputs:
          parameters:
            data_path: {componentInputParameter: data_path}
      train:
        taskInfo: {name: train}
        componentRef: {name: comp-train}
        dependentTasks: [prepare-data]
        inputs:
          artifacts:
            dataset: {taskOutputArtifact: {producerTask: prepare-data, outputArtifactKey: dataset}}
          parameters:
            model_base_path: {componentInputParameter: model_base_path}
            model_version: {componentInputParameter: model_version}
            epochs: {componentInputParameter: epochs}
components:
  comp-prepare-data:
    executorLabel: exec-prepare-data
    inputDefinitions:
      parameters:
        data_path: {parameterType: STRING}
    outputDefinitions:
      artifacts:
        dataset: {artifactType: {schemaTitle: system.Dataset, schemaVersion: 0.0.1}}
  comp-train:
    executorLabel: exec-train
    inputDefinitions:
      artifacts:
        dataset: {artifactType: {schemaTitle: system.Dataset, schemaVersion: 0.0.1}}
      parameters:
        model_base_path: {parameterType: STRING}
        model_version: {parameterType: NUMBER_INTEGER}
        epochs: {parameterType: NUMBER_INTEGER}
    outputDefinitions:
      artifacts:
        metrics: {artifactType: {schemaTitle: system.Metrics, schemaVersion: 0.0.1}}
        model: {artifactType: {schemaTitle: system.Model, schemaVersion: 0.0.1}}
deploymentSpec:
  executors:
    exec-prepare-data:
      container:
        image: IMAGE
        command: [/ko-app/tool]
        args:
        - write
        - "{{$.outputs.artifacts['dataset'].path}}"
        - "data from {{$.inputs.parameters['data_path']}}"
    exec-train:
      container:
        image: IMAGE
        command: [/ko-app/tool]
        args:
` + train + `
---
platforms:
  kubernetes:
    deploymentSpec:
      executors:
        exec-train:
          nodeSelector:
            labels: {pool: train}
`
	return []byte(strings.ReplaceAll(s, "IMAGE", image))
}
