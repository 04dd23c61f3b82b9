"""The models the pruning papers use, as functional Keras models.

Layer names are stable (Caffe's conv1/conv2/ip1/ip2 for LeNet-5) so configs
can select layers by name. All classifiers end in a softmax. Every builder
takes ``keras_generation``: 'tf_keras' (default) or 'keras3'.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

from tfprune import generations

Shape = Tuple[int, ...]


def _width(channels: int, width: float) -> int:
  return max(1, int(round(channels * width)))


def mlp(input_shape: Shape = (28, 28, 1), hidden: Sequence[int] = (300, 100),
        classes: int = 10, activation: str = 'relu',
        name: str = 'mlp',
        keras_generation: str = 'tf_keras'):
  """A fully connected net: Flatten, Dense(h) for h in hidden, Dense(classes)."""
  keras = generations.named(keras_generation).keras
  layers = keras.layers
  inputs = keras.Input(input_shape)
  x = layers.Flatten(name='flatten')(inputs)
  for i, units in enumerate(hidden, 1):
    x = layers.Dense(units, activation=activation, name=f'fc{i}')(x)
  outputs = layers.Dense(classes, activation='softmax', name='logits')(x)
  return keras.Model(inputs, outputs, name=name)


def lenet_300_100(input_shape: Shape = (28, 28, 1),
                  classes: int = 10,
                  keras_generation: str = 'tf_keras'):
  """LeNet-300-100 (266,610 params on MNIST)."""
  return mlp(input_shape, (300, 100), classes, name='lenet_300_100',
             keras_generation=keras_generation)


def lenet5(input_shape: Shape = (28, 28, 1), classes: int = 10,
           conv_relu: bool = False, batch_norm: bool = False,
           keras_generation: str = 'tf_keras'):
  """Caffe's LeNet: conv1 20@5x5, pool, conv2 50@5x5, pool, ip1 500, ip2.

  431,080 params on MNIST. Caffe has no ReLU after the convs; ``conv_relu``
  adds them (Network Trimming needs post-ReLU conv outputs), ``batch_norm``
  puts a BatchNormalization after each conv (Synaptic Strength).
  """
  keras = generations.named(keras_generation).keras
  layers = keras.layers
  inputs = keras.Input(input_shape)
  x = inputs
  for i, filters in enumerate((20, 50), 1):
    x = layers.Conv2D(filters, 5, name=f'conv{i}')(x)
    if batch_norm:
      x = layers.BatchNormalization(name=f'bn{i}')(x)
    if conv_relu:
      x = layers.ReLU(name=f'relu{i}')(x)
    x = layers.MaxPooling2D(2, name=f'pool{i}')(x)
  x = layers.Flatten(name='flatten')(x)
  x = layers.Dense(500, activation='relu', name='ip1')(x)
  outputs = layers.Dense(classes, activation='softmax', name='ip2')(x)
  return keras.Model(inputs, outputs, name='lenet5')


def small_cnn(input_shape: Shape = (8, 8, 1), classes: int = 10,
              filters: Sequence[int] = (16, 32),
              dense: int = 64,
              keras_generation: str = 'tf_keras'):
  """A small ConvNet for the embedded 8x8 digits (the quickstart model)."""
  keras = generations.named(keras_generation).keras
  layers = keras.layers
  inputs = keras.Input(input_shape)
  x = inputs
  for i, f in enumerate(filters, 1):
    x = layers.Conv2D(f, 3, padding='same', activation='relu',
                      name=f'conv{i}')(x)
  x = layers.MaxPooling2D(2, name='pool')(x)
  x = layers.Flatten(name='flatten')(x)
  x = layers.Dense(dense, activation='relu', name='fc1')(x)
  outputs = layers.Dense(classes, activation='softmax', name='logits')(x)
  return keras.Model(inputs, outputs, name='small_cnn')


VGG16_PLAN = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M',
              512, 512, 512, 'M', 512, 512, 512, 'M')


def vgg16(input_shape: Shape = (32, 32, 3), classes: int = 10,
          width: float = 1.0, batch_norm: bool = True,
          keras_generation: str = 'tf_keras'):
  """VGG-16 for 32x32 inputs: 13 conv3x3 (+BN) + ReLU, 5 max-pools, Dense.

  14,736,714 params at width 1 with BN on CIFAR-10 shapes; ``width`` scales
  every conv's filter count.
  """
  keras = generations.named(keras_generation).keras
  layers = keras.layers
  inputs = keras.Input(input_shape)
  x = inputs
  conv, block = 0, 1
  for item in VGG16_PLAN:
    if item == 'M':
      x = layers.MaxPooling2D(2, name=f'pool{block}')(x)
      block, conv = block + 1, 0
      continue
    conv += 1
    name = f'conv{block}_{conv}'
    x = layers.Conv2D(_width(item, width), 3, padding='same', name=name)(x)
    if batch_norm:
      x = layers.BatchNormalization(name=f'{name}_bn')(x)
    x = layers.ReLU(name=f'{name}_relu')(x)
  x = layers.Flatten(name='flatten')(x)
  outputs = layers.Dense(classes, activation='softmax', name='fc')(x)
  return keras.Model(inputs, outputs, name='vgg16')


def resnet(depth: int = 20, input_shape: Shape = (32, 32, 3),
           classes: int = 10, width: float = 1.0,
           keras_generation: str = 'tf_keras'):
  """CIFAR ResNet (He et al. 2016): depth = 6n + 2, stages of 16/32/64.

  Downsampling shortcuts are 1x1 conv + BN projections (option B), so the
  graph has only built-in ops; convs have no bias (BN follows).
  """
  keras = generations.named(keras_generation).keras
  layers = keras.layers
  if (depth - 2) % 6:
    raise ValueError(f'CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, ...),'
                     f' got {depth}')
  blocks = (depth - 2) // 6

  def conv_bn(x, filters, kernel, stride, name):
    x = layers.Conv2D(filters, kernel, strides=stride, padding='same',
                      use_bias=False, name=name)(x)
    return layers.BatchNormalization(name=f'{name}_bn')(x)

  inputs = keras.Input(input_shape)
  x = layers.ReLU(name='stem_relu')(
      conv_bn(inputs, _width(16, width), 3, 1, 'stem'))
  for stage, base in enumerate((16, 32, 64), 1):
    filters = _width(base, width)
    for b in range(1, blocks + 1):
      stride = 2 if stage > 1 and b == 1 else 1
      name = f's{stage}b{b}'
      y = layers.ReLU(name=f'{name}_relu1')(
          conv_bn(x, filters, 3, stride, f'{name}_conv1'))
      y = conv_bn(y, filters, 3, 1, f'{name}_conv2')
      shortcut = x
      if stride != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, stride, f'{name}_proj')
      x = layers.ReLU(name=f'{name}_relu2')(
          layers.Add(name=f'{name}_add')([shortcut, y]))
  x = layers.GlobalAveragePooling2D(name='gap')(x)
  outputs = layers.Dense(classes, activation='softmax', name='fc')(x)
  return keras.Model(inputs, outputs, name=f'resnet{depth}')


def densenet(blocks: Sequence[int] = (4, 4, 4), growth_rate: int = 12,
             input_shape: Shape = (32, 32, 3), classes: int = 10,
             compression: float = 0.5,
             keras_generation: str = 'tf_keras'):
  """A small DenseNet: BN-ReLU-Conv3x3 layers joined by Concatenate.

  Each dense block adds ``growth_rate`` channels per layer; transitions
  (BN-ReLU-Conv1x1 with ``compression``, AvgPool 2) sit between blocks.
  """
  keras = generations.named(keras_generation).keras
  layers = keras.layers
  inputs = keras.Input(input_shape)
  x = layers.Conv2D(2 * growth_rate, 3, padding='same', use_bias=False,
                    name='stem')(inputs)
  for b, count in enumerate(blocks, 1):
    for i in range(1, count + 1):
      name = f'b{b}l{i}'
      y = layers.BatchNormalization(name=f'{name}_bn')(x)
      y = layers.ReLU(name=f'{name}_relu')(y)
      y = layers.Conv2D(growth_rate, 3, padding='same', use_bias=False,
                        name=f'{name}_conv')(y)
      x = layers.Concatenate(name=f'{name}_concat')([x, y])
    if b < len(blocks):
      name = f't{b}'
      x = layers.BatchNormalization(name=f'{name}_bn')(x)
      x = layers.ReLU(name=f'{name}_relu')(x)
      x = layers.Conv2D(max(1, int(x.shape[-1] * compression)), 1,
                        use_bias=False, name=f'{name}_conv')(x)
      x = layers.AveragePooling2D(2, name=f'{name}_pool')(x)
  x = layers.BatchNormalization(name='final_bn')(x)
  x = layers.ReLU(name='final_relu')(x)
  x = layers.GlobalAveragePooling2D(name='gap')(x)
  outputs = layers.Dense(classes, activation='softmax', name='fc')(x)
  return keras.Model(inputs, outputs, name='densenet')


_BUILDERS: Dict[str, Callable] = {
    'mlp': mlp,
    'small_cnn': small_cnn,
    'lenet_300_100': lenet_300_100,
    'lenet5': lenet5,
    'vgg16': vgg16,
    'resnet20': lambda **kw: resnet(20, **kw),
    'resnet56': lambda **kw: resnet(56, **kw),
    'densenet': densenet,
}


def get(name: str, **kwargs):
  """Build a model by name: one of :data:`NAMES`."""
  if name not in _BUILDERS:
    raise ValueError(f'unknown model {name!r}; choose one of {NAMES}')
  return _BUILDERS[name](**kwargs)


NAMES = tuple(sorted(_BUILDERS))
