"""The base of the SatGen algorithms: naming, help, and the one ``processAlgorithm``.

Like the GDAL provider's ``getConsoleCommands``, each algorithm only says which ``satgen``
command to run (:meth:`SatGenAlgorithm.command`); running it, turning its errors into
QGIS's words and loading the outputs happens here, once. Parameters are declared in
:mod:`.parameters`, turned into arguments in :mod:`.arguments`, and layers exported in
:mod:`.export`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence

from qgis.core import QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingException

from .. import resources
from ..resources import tr
from ..runner import ToolkitError, run_satgen, toolkit_status
from . import arguments as a
from .messages import describe_error
from .outputs import Output, load_on_completion
from .parameters import MASK_OUTPUT, OUTPUT, SEED, DataSource

HOMEPAGE = "https://github.com/satgen-geo/satgen-geo"
HELP_URL = f"{HOMEPAGE}/blob/main/qgis_plugin/README.md"
#: Words the Processing Toolbox search finds every SatGen algorithm by.
TAGS = ("satgen", "synthetic", "aerial", "orthophoto", "imagery", "satellite", "generated", "deep learning",
        "gan", "pix2pix", "roads", "buildings")
OSM_HELP = ("Map data © OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright). "
            "The output is synthetic imagery, not a photograph.")


@dataclass(frozen=True)
class ToolkitCommand:
    """One ``satgen`` call: command, arguments, the rasters it writes and where the data come from.

    ``keep_after`` maps an output path to the stage after whose start the output is
    finished: it is kept even if the run is cancelled or fails later.
    """

    verb: str
    args: List[str]
    outputs: List[Output]
    source: DataSource
    keep_after: Dict[str, str] = field(default_factory=dict)


class SatGenAlgorithm(QgsProcessingAlgorithm):
    """Base of the SatGen algorithms; subclasses declare parameters and build one command."""

    #: Search words of this algorithm besides :data:`TAGS`.
    extra_tags: Sequence[str] = ()
    #: Section of the plugin README about this algorithm.
    help_anchor = "using-the-algorithms"

    def tr(self, text: str) -> str:
        return tr(text)

    def createInstance(self):  # noqa: N802 - QGIS API name
        return type(self)()

    def group(self) -> str:
        return ""  # the algorithms sit directly under the SatGen provider

    def groupId(self) -> str:  # noqa: N802 - QGIS API name
        return ""

    def icon(self):
        return resources.icon()

    def tags(self) -> List[str]:
        return [tr(tag) for tag in (*TAGS, *self.extra_tags)]

    def helpUrl(self) -> str:  # noqa: N802 - QGIS API name
        return f"{HELP_URL}#{self.help_anchor}"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API name
        return f"{self.help_text()}\n\n{toolkit_status()}"

    def help_text(self) -> str:
        """What the algorithm does and what its parameters mean."""
        raise NotImplementedError

    def command(self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback) -> ToolkitCommand:
        """The ``satgen`` call for these parameters (temporary layer files are written here)."""
        raise NotImplementedError

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API name
        command = self.command(parameters, context, feedback)
        try:
            run_satgen(command.verb, command.args, feedback, [o.path for o in command.outputs],
                       stage_text={"features": command.source.reading_text}, keep_after=command.keep_after)
        except ToolkitError as err:
            raise QgsProcessingException(describe_error(self, err.message, err.param)) from None
        load_on_completion(context, command.outputs)
        return {output.parameter: output.path or None for output in command.outputs}

    def image_name(self, source: str, seed: int) -> str:
        return tr("Synthetic imagery ({}, seed {})").format(source, seed)

    def mask_name(self, source: str) -> str:
        return tr("Mask ({})").format(source)

    def generate_command(self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback,
                         source: DataSource) -> ToolkitCommand:
        """``satgen generate`` (mask and image in one run) from OpenStreetMap or layers."""
        output = a.output_path(self, parameters, OUTPUT, context)
        mask_output = a.output_path(self, parameters, MASK_OUTPUT, context)
        args = a.source_args(self, parameters, context, feedback, source) + a.grid_args(self, parameters, context)
        args += a.render_args(self, parameters, context) + ["-o", output]
        if mask_output:
            args += ["--mask-out", mask_output]
        label = a.source_label(self, parameters, context, source)
        seed = self.parameterAsInt(parameters, SEED, context)
        outputs = [Output(OUTPUT, output, self.image_name(label, seed)),
                   Output(MASK_OUTPUT, mask_output, self.mask_name(label), is_mask=True)]
        # The mask is finished when rendering starts: keep it if the image part is cancelled.
        return ToolkitCommand("generate", args, outputs, source, {mask_output: "render"} if mask_output else {})
