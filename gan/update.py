"""One training step of every GAN here: n_dis D updates, then one G update, then the EMA of G.

Under DDP each rank sees its shard of the global batch; its losses are shard means, and DDP averages the gradients
over the ranks, which gives the global batch's gradient. DiffAugment (when on) sits in front of every D forward:
real, fake, and the penalties' inputs. The losses stay on the device: the loop syncs once per log interval.
"""
from __future__ import annotations

import torch

from gan import device as gdevice, losses
from gan.stop import at as moment  # a test hook, nothing otherwise


class Update:
    def __init__(self, cfg, nets, opt_G, opt_D, sampler, augment, dist, num_classes: int):
        self.cfg, self.nets, self.opt_G, self.opt_D = cfg, nets, opt_G, opt_D
        self.sampler, self.augment, self.dist, self.num_classes = sampler, augment, dist, num_classes
        o = cfg.optim
        self.g_batch = o.g_batch_size or o.batch_size  # pytorch-gan-collections' G step draws 2 × batch
        # one G forward serves D's and G's update (as the reference loops do) where nothing else needs its own
        self.reuse_fake = (cfg.train.reuse_fake and o.n_dis == 1 and self.g_batch == o.batch_size
                           and not (cfg.loss.gp_weight or cfg.loss.r1_weight))

    def latents(self, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The global batch of `b` latents (and classes), drawn alike on every rank; this rank's shard of it."""
        sh, dev = self.dist.shard(b), self.dist.device
        z = torch.randn(b, self.cfg.model.z_dim, device=dev)[sh]
        y = torch.randint(self.num_classes, (b,), device=dev)[sh] if self.num_classes else None
        return z, y

    def __call__(self, step: int, steps: int, precision: str, ema_from: int) -> torch.Tensor:
        """Generator step `step` (0-based) of `steps`; returns [loss_D, loss_G, D(x), D(G(z))] on the device."""
        c, n, aug = self.cfg, self.nets, self.augment
        amp = gdevice.autocast(self.dist.device, precision)
        if c.optim.lr_decay == "linear":  # as LambdaLR(1 - step / steps): this step's factor, no state to keep
            for opt, lr in ((self.opt_G, c.optim.g_lr), (self.opt_D, c.optim.d_lr)):
                opt.param_groups[0]["lr"] = lr * (1.0 - step / steps)
        for _ in range(c.optim.n_dis):
            real, y_real = self.sampler.next()
            if c.data.dequantize:
                real = real + torch.rand_like(real) / 128
            real = real.contiguous(memory_format=n.memory_format)
            z, y = self.latents(c.optim.batch_size)
            with amp:
                with torch.set_grad_enabled(self.reuse_fake):  # kept for G's update when one forward serves both
                    fake = n.G_train(z, y)
                d_real, d_fake = n.D_train(aug(real), y_real).float(), n.D_train(aug(fake.detach()), y).float()
                loss_d = losses.d_loss(c.loss.name, d_real, d_fake, c.loss.label_smoothing, c.loss.label_noise)
                loss_d = loss_d + losses.penalty(c.loss, lambda x: n.D_train(aug(x), y_real), real, fake.detach())
            self.opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_D.step()
        moment("step")
        n.D.requires_grad_(False)  # G's update needs D's input gradients, not its weight gradients
        with amp:
            if not self.reuse_fake:
                z, y = self.latents(self.g_batch)
                fake = n.G_train(z, y)
            loss_g = losses.g_loss(c.loss.name, n.D_judge(aug(fake), y).float())
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()
        n.D.requires_grad_(True)
        n.ema_update(c.optim.ema_decay if step >= ema_from else 0.0)
        return torch.stack([loss_d.detach(), loss_g.detach(), losses.d_output_mean(c.loss.name, d_real.detach()),
                            losses.d_output_mean(c.loss.name, d_fake.detach())])
