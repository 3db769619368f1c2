"""moto's S3 service alone, as the stand-in S3 server of docker-compose.local.yml.

``moto_server`` serves every AWS service moto has and, for each request, works out which one it is
for from its host and signature (scanning moto's module list); the lake only speaks S3, and that
dispatch cost about 40% of each GET (measured: 1,500 GETs of 8 kB objects over 8 threads took 12.8 s
through ``moto_server``, 7.2 s through the S3 app alone). Same request handler, same arguments.
"""

import argparse
import logging

from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("-H", "--host", default="127.0.0.1")
parser.add_argument("-p", "--port", type=int, default=5000)
args = parser.parse_args()
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
run_simple(args.host, args.port, create_backend_app("s3"), threaded=True, request_handler=MotoRequestHandler)
