/** The implementations of the model dimension, by name. Add a model here. */
import type { DmaModel } from './models.js';
import { INPROC_MODEL, INPROC_SWIOTLB_MODEL } from './model-inproc.js';
import { DIRECT_MODEL, MESSAGE_MODEL, SWIOTLB_MODEL } from './model-vfio.js';
import { VHOST_OURS_MODEL, VHOST_QSD_MODEL } from './model-vhost.js';
import type { ModelName } from './scenario.js';

export const DMA_MODELS: Readonly<Record<ModelName, DmaModel>> = {
  inproc: INPROC_MODEL,
  'inproc-swiotlb': INPROC_SWIOTLB_MODEL,
  direct: DIRECT_MODEL,
  swiotlb: SWIOTLB_MODEL,
  message: MESSAGE_MODEL,
  'vhost-qsd': VHOST_QSD_MODEL,
  'vhost-ours': VHOST_OURS_MODEL,
};
