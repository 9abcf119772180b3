# syntax=docker/dockerfile:1
# Builds the three DJIA 30 example components (prepare-data, train, serve)
# into one image at /ko-app/<name>, the paths pipeline.yaml's executors use
# (the same layout ko produces). Build from the repository root:
#
#   docker build -f docker/djia30-components.Dockerfile -t djia30/components:latest .
#
# and tag the same image as djia30/prepare-data, djia30/train and djia30/serve,
# (all three binaries are in every tag; KFP executors set command explicitly).
FROM golang:1.26 AS build
WORKDIR /src
COPY examples/djia30/go.mod examples/djia30/go.sum ./
RUN go mod download
COPY examples/djia30/ ./
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
RUN go test ./internal/tfserving/ ./internal/model/ ./internal/metrics/ \
 && mkdir -p /out \
 && go build -ldflags="-s -w" -o /out/prepare-data ./components/prepare-data \
 && go build -ldflags="-s -w" -o /out/train ./components/train \
 && go build -ldflags="-s -w" -o /out/serve ./components/serve

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /ko-app/
# serve: REST port of tensorflow_model_server
EXPOSE 8501
ENTRYPOINT ["/ko-app/serve"]
CMD ["--rest_api_port=8501", "--model_name=djia30", "--model_base_path=/models/djia30"]
