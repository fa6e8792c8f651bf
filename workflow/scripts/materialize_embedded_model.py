"""Rule materialize_embedded_model: SmolLM2-135M-Instruct as a safetensors folder."""

import logging
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stdout)

from critical_windows.engine.models import materialize_embedded

materialize_embedded(Path(snakemake.output[0]))
