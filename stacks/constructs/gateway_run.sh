#!/bin/bash
# Handler of the gateway function, staged as run.sh at the asset root. The Lambda Web Adapter layer
# (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) runs it and proxies the invocations to this server on $PORT.
# `python -m` puts the task root first on sys.path, so the bundled botocore (aiobotocore's pin) wins over the runtime's.
export PATH="$PATH:$LAMBDA_TASK_ROOT/bin"
export PYTHONPATH="$LAMBDA_TASK_ROOT:/opt/python${PYTHONPATH:+:$PYTHONPATH}"
exec python -m uvicorn --host 127.0.0.1 --port "${PORT:-8080}" --no-server-header lambdas.gateway.app:app
