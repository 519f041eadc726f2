"""The photographs shipped inside scikit-image, as a tiny image-text source.

Read from the installed `skimage.data` folder (no download), with
hand-written captions: a short web-style one and a richer, spatial one.
Handy for demos, smoke tests and pictures. Some files are grayscale or
RGBA, so they also exercise the conversions of the decoder.
"""

import os

from keras_tips.data.records import make_record

# (file name, web caption, synthetic caption)
SKIMAGE_PHOTOS = (
    (
        "astronaut.png",
        "astronaut portrait",
        "a smiling astronaut in an orange spacesuit in the center, an "
        "american flag on the left, a model of the space shuttle in the top "
        "right and a black helmet in the bottom right",
    ),
    (
        "coffee.png",
        "cup of coffee",
        "a white cup of coffee on a red saucer with a spoon, on a wooden "
        "table, seen from above",
    ),
    (
        "chelsea.png",
        "my cat chelsea",
        "close-up of the face of a tabby cat with green eyes and pink nose, "
        "looking at the camera",
    ),
    (
        "rocket.jpg",
        "rocket launch pad",
        "a white rocket standing on a launch pad in the center at dusk, "
        "between tall lightning towers, with lights along the ground",
    ),
    (
        "hubble_deep_field.jpg",
        "hubble deep field",
        "hundreds of small distant galaxies, red, white and blue dots on a "
        "black sky",
    ),
    (
        "ihc.png",
        "immunohistochemistry",
        "microscope image of stained tissue: brown cell clusters on a pale "
        "blue background",
    ),
    (
        "retina.jpg",
        "retina fundus photo",
        "an orange photograph of the back of an eye, red blood vessels "
        "spreading from the bright optic disc on the left, on a black "
        "background",
    ),
    (
        "color.png",
        "color wheel",
        "a disc of all hues, fading to white in the center, on a black "
        "background",
    ),
    (
        "motorcycle_left.png",
        "motorbike",
        "a red motorcycle parked in a garage in the center, shelves with "
        "boxes in the background and a wooden chair on the left",
    ),
    (
        "logo.png",
        "scikit-image logo",
        "a round logo, green in the top left and orange in the bottom right, "
        "with a snake drawn across it, on a white background",
    ),
    (
        "camera.png",
        "cameraman",
        "black and white photo of a man in a dark coat on the left, looking "
        "through a camera on a tripod, on a lawn with buildings far behind",
    ),
    (
        "coins.png",
        "old coins",
        "grayscale photo of four rows of old coins on a dark background",
    ),
    (
        "moon.png",
        "moon surface",
        "grayscale close-up of the surface of the moon with a few small "
        "craters",
    ),
    (
        "page.png",
        "scanned page",
        "a scanned page of printed text with the title region-based "
        "segmentation at the top",
    ),
    (
        "horse.png",
        "horse silhouette",
        "the black silhouette of a horse facing right on a white background",
    ),
    (
        "chessboard_RGB.png",
        "checkerboard",
        "a black and white checkerboard pattern filling the whole image",
    ),
)


def skimage_data_dir():
    """The folder of scikit-image's bundled data files.

    Raises:
        ModuleNotFoundError: scikit-image is not installed (it is the
            `photos` extra).
    """
    try:
        import skimage.data
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "The bundled photographs come with scikit-image, which is not "
            "installed: pip install 'keras-tips[photos]'."
        ) from error

    return os.path.dirname(skimage.data.__file__)


class SkimagePhotosSource:
    """The bundled scikit-image photographs as image-text records.

    Images are the encoded files (decoded by the pipeline like any other
    source); files missing from the installation are left out.

    Example:
    ```python
    source = SkimagePhotosSource()
    record = source[0]  # astronaut.png bytes + captions
    ```
    """

    def __init__(self):
        root = skimage_data_dir()
        self.photos = [
            (os.path.join(root, name), caption, synthetic)
            for name, caption, synthetic in SKIMAGE_PHOTOS
            if os.path.exists(os.path.join(root, name))
        ]

    def __len__(self):
        return len(self.photos)

    def __getitem__(self, index):
        path, caption, synthetic = self.photos[int(index)]
        with open(path, "rb") as f:
            image = f.read()
        return make_record(
            image=image,
            caption=caption,
            synthetic_caption=synthetic,
            key=os.path.basename(path),
        )

    @property
    def names(self):
        return [os.path.basename(path) for path, _, _ in self.photos]
