"""Installs the tfprune and tflite_export packages."""

from setuptools import find_packages, setup

setup(
    name='tfprune',
    version='0.1.0',
    description=('Structured pruning methods for tf_keras models, trained with '
                 'model.fit and exported to TFLite'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10,<3.13',
    packages=find_packages(include=['tfprune', 'tfprune.*', 'tflite_export',
                                    'tflite_export.*']),
    install_requires=[
        'tensorflow>=2.21,<2.22',
        'tf-keras>=2.21,<2.22',
        'tensorflow-model-optimization==0.8.1',
        'tensorflow-datasets>=4.9',
        'absl-py>=1.4',
        'tensorboard>=2.19',
        'ml-collections>=0.1.1',
        'ai-edge-litert>=2.3',
        'scikit-learn>=1.3',
        'h5py>=3.10',
        'numpy>=1.26',
        'scipy>=1.10',
        'matplotlib>=3.7',   # report.md's per-layer chart
    ],
    extras_require={
        'test': ['pytest>=7', 'pytest-xdist>=3', 'networkx>=3'],
    },
    entry_points={'console_scripts': [
        'tfprune=tfprune.cli:main',
        'tfprune-train=tfprune.train:run_app',
    ]},
)
