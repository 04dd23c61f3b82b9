"""Parameter counts of the paper models, checked against hand sums."""

import pytest

from tfprune import models


def test_lenet_300_100():
  assert models.lenet_300_100().count_params() == 266_610


def test_lenet5_caffe():
  model = models.lenet5()
  assert model.count_params() == 431_080
  assert [l.name for l in model.layers if l.weights] == ['conv1', 'conv2',
                                                         'ip1', 'ip2']
  assert models.lenet5(conv_relu=True).count_params() == 431_080
  # BN adds 4 params per channel
  assert models.lenet5(batch_norm=True).count_params() == 431_080 + 4 * 70


def test_vgg16_cifar():
  convs = 9 * (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 +
               2 * 256 * 256 + 256 * 512 + 5 * 512 * 512)
  channels = 2 * 64 + 2 * 128 + 3 * 256 + 6 * 512
  expected = convs + channels + 4 * channels + 512 * 10 + 10
  assert expected == 14_736_714
  assert models.vgg16().count_params() == expected
  half = models.vgg16(width=0.5, input_shape=(32, 32, 1))
  assert half.get_layer('conv5_3').filters == 256
  assert models.vgg16(batch_norm=False).count_params() == expected - 4 * channels


def test_resnet20_56():
  # stem 432+64; stage1 6 convs 16->16; stage2 32->32 (+16->32, 1x1 proj);
  # stage3 64 (+32->64 proj); BN 4/channel; fc 64*10+10
  assert models.resnet(20).count_params() == 274_042
  blocks = 9
  expected = (432 + 64
              + 2 * blocks * (2304 + 64)
              + 4608 + (2 * blocks - 1) * 9216 + 2 * blocks * 128 + 512 + 128
              + 18432 + (2 * blocks - 1) * 36864 + 2 * blocks * 256 + 2048
              + 256 + 650)
  assert models.resnet(56).count_params() == expected
  with pytest.raises(ValueError, match='6n\\+2'):
    models.resnet(21)


def test_densenet_and_mlp():
  # stem 3*3*3*24; 4 layers per block: BN(c)+conv 3x3 c->12
  model = models.densenet(blocks=(2,), growth_rate=4, input_shape=(8, 8, 3))
  expected = (27 * 8 + (4 * 8 + 9 * 8 * 4) + (4 * 12 + 9 * 12 * 4)
              + 4 * 16 + 16 * 10 + 10)
  assert model.count_params() == expected
  assert models.mlp((4,), (3,), 2).count_params() == 4 * 3 + 3 + 3 * 2 + 2


def test_get_by_name():
  assert models.get('lenet5').count_params() == 431_080
  with pytest.raises(ValueError, match='unknown model'):
    models.get('alexnet')
