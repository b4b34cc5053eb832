# PPO for discrete-action gymnasium environments, a single-file script in the style of CleanRL's
# ppo.py (https://github.com/vwxyzjn/cleanrl/blob/master/cleanrl/ppo.py, documented at
# https://docs.cleanrl.dev/rl-algorithms/ppo/#ppopy): same arguments, defaults, network, losses and
# TensorBoard tags, ported to gymnasium 1.x and numpy 2.
#
# Differences from CleanRL's ppo.py, all deliberate:
# - Episode statistics come from the vector RecordEpisodeStatistics wrapper (`infos["episode"]`
#   with its `"_episode"` mask). CleanRL reads `infos["final_info"]`, which gymnasium 1.x no longer
#   fills with episode statistics, so it logs no episodes at all.
# - Autoreset: gymnasium 1.x vector envs reset a finished sub-env on the *next* step, which ignores
#   the action (NEXT_STEP). We reset within the same step (SAME_STEP) when the installed gymnasium
#   records episode statistics correctly in that mode (>= 1.4), and otherwise keep NEXT_STEP and
#   drop those reset transitions from the batch. `--autoreset-mode` overrides the choice.
# - Time-limit truncations are bootstrapped with the value of the final observation instead of
#   being treated as terminal (`--no-bootstrap-truncated` restores CleanRL's behaviour).
# - Speed, with the same algorithm: the rollout is stored in numpy and turned into tensors once
#   per iteration, actions are sampled without building a distribution object, the loop runs in a
#   function, and Adam is the few lines below rather than torch.optim.Adam, whose constructor
#   imports torch._dynamo: that takes about as long as importing torch itself (3 s or more).
# - The TensorBoard writer is flushed every iteration so that a live view (and nbtune) sees the
#   latest points; torch's SummaryWriter otherwise flushes only every 10 events or 120 s.
import math
import os
import random
import re
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.distributions.categorical import Categorical
from torch.utils.tensorboard import SummaryWriter


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=False`"""
    cuda: bool = True
    """if toggled, cuda will be enabled by default"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "cleanRL"
    """the wandb's project name"""
    wandb_entity: str | None = None
    """the entity (team) of wandb's project"""
    capture_video: bool = False
    """whether to capture videos of the agent performances (check out `videos` folder)"""

    # Algorithm specific arguments
    env_id: str = "CartPole-v1"
    """the id of the environment"""
    total_timesteps: int = 500000
    """total timesteps of the experiments"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 4
    """the number of parallel game environments"""
    num_steps: int = 128
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """Toggle learning rate annealing for policy and value networks"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 4
    """the number of mini-batches"""
    update_epochs: int = 4
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """Toggles advantages normalization"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """Toggles whether or not to use a clipped loss for the value function, as per the paper."""
    ent_coef: float = 0.01
    """coefficient of the entropy"""
    vf_coef: float = 0.5
    """coefficient of the value function"""
    max_grad_norm: float = 0.5
    """the maximum norm for the gradient clipping"""
    target_kl: float | None = None
    """the target KL divergence threshold"""
    bootstrap_truncated: bool = True
    """bootstrap time-limit truncations with the final observation's value (CleanRL: as terminal)"""
    autoreset_mode: Literal["auto", "same-step", "next-step"] = "auto"
    """same-step, or next-step without its reset steps; auto: same-step if gymnasium >= 1.4"""

    # to be filled in runtime
    batch_size: int = 0
    """the batch size (computed in runtime)"""
    minibatch_size: int = 0
    """the mini-batch size (computed in runtime)"""
    num_iterations: int = 0
    """the number of iterations (computed in runtime)"""


def make_env(env_id: str, idx: int, capture_video: bool, run_name: str) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        if capture_video and idx == 0:
            env = gym.make(env_id, render_mode="rgb_array")
            return gym.wrappers.RecordVideo(env, f"videos/{run_name}")
        return gym.make(env_id)

    return thunk


def gymnasium_version() -> tuple[int, int]:
    major, minor = re.findall(r"\d+", gym.__version__)[:2]
    return int(major), int(minor)


def use_same_step(mode: str) -> bool:
    # vector.RecordEpisodeStatistics drops the first step of every episode but the first under
    # SAME_STEP before gymnasium 1.4 (Farama-Foundation/Gymnasium#1624), so only pick it from 1.4.
    if mode == "auto":
        return gymnasium_version() >= (1, 4)
    if mode == "same-step":
        if not hasattr(gym.vector, "AutoresetMode"):
            raise SystemExit("--autoreset-mode same-step needs gymnasium >= 1.1")
        if gymnasium_version() < (1, 4):
            warnings.warn(
                "gymnasium < 1.4 logs SAME_STEP episodes one step short",
                RuntimeWarning,
                stacklevel=2,
            )
        return True
    return False


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Adam:
    """torch.optim.Adam(params, lr, eps=eps)'s foreach update (bit for bit on torch 2.13)."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, eps: float = 1e-8) -> None:
        self.params = list(params)
        self.param_groups = [{"lr": lr}]  # what CleanRL's lr annealing writes to
        self.beta1, self.beta2, self.eps, self.steps = 0.9, 0.999, eps, 0
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        grads = [p.grad for p in self.params]
        torch._foreach_lerp_(self.exp_avgs, grads, 1 - self.beta1)
        torch._foreach_mul_(self.exp_avg_sqs, self.beta2)
        torch._foreach_addcmul_(self.exp_avg_sqs, grads, grads, 1 - self.beta2)
        denom = torch._foreach_sqrt(self.exp_avg_sqs)
        torch._foreach_div_(denom, math.sqrt(1 - self.beta2**self.steps))
        torch._foreach_add_(denom, self.eps)
        step_size = self.param_groups[0]["lr"] / (1 - self.beta1**self.steps)
        torch._foreach_addcdiv_(self.params, self.exp_avgs, denom, -step_size)


class Agent(nn.Module):
    def __init__(self, envs: gym.vector.VectorEnv) -> None:
        super().__init__()
        obs_dim = int(np.prod(envs.single_observation_space.shape))
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, int(envs.single_action_space.n)), std=0.01),
        )

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def act(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample actions for the rollout: get_action_and_value without entropy or Categorical."""
        logp = self.actor(x).log_softmax(-1)
        action = torch.multinomial(logp.exp(), 1)
        return action.view(-1), logp.gather(1, action).view(-1), self.critic(x).view(-1)

    def get_action_and_value(
        self, x: torch.Tensor, action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.actor(x)
        probs = Categorical(logits=logits, validate_args=False)  # our logits are finite
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)


def main(args: Args) -> None:
    args.batch_size = int(args.num_envs * args.num_steps)
    args.minibatch_size = int(args.batch_size // args.num_minibatches)
    args.num_iterations = args.total_timesteps // args.batch_size
    run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    if args.track:
        import wandb  # only when tracking: it is slow to import and an optional dependency

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            sync_tensorboard=True,
            config=vars(args),
            name=run_name,
            monitor_gym=True,
            save_code=True,
        )
    writer = SummaryWriter(f"runs/{run_name}", flush_secs=1)
    writer.add_text(
        "hyperparameters",
        "|param|value|\n|-|-|\n{}".format("\n".join(f"|{k}|{v}|" for k, v in vars(args).items())),
    )

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    # env setup: SyncVectorEnv, as subprocesses cost more than these environments' steps
    same_step = use_same_step(args.autoreset_mode)
    env_fns = [make_env(args.env_id, i, args.capture_video, run_name) for i in range(args.num_envs)]
    if same_step:
        envs = gym.vector.SyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    else:
        envs = gym.vector.SyncVectorEnv(env_fns)  # NEXT_STEP, the default of every gymnasium 1.x
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    assert isinstance(envs.single_action_space, gym.spaces.Discrete), (
        "only discrete action space is supported"
    )

    agent = Agent(envs).to(device)
    optimizer = Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    # ALGO Logic: Storage setup, in numpy: per-step tensor writes cost more than the network.
    shape = (args.num_steps, args.num_envs)
    obs_shape = envs.single_observation_space.shape
    obs = np.zeros(shape + obs_shape, dtype=np.float32)
    actions = np.zeros(shape, dtype=np.int64)
    logprobs = np.zeros(shape, dtype=np.float32)
    rewards = np.zeros(shape, dtype=np.float32)
    values = np.zeros(shape, dtype=np.float32)
    # bootstraps[t]: bootstrap from the value of the observation after step t;
    # continues[t]: the episode goes on after step t (GAE does not cross episode boundaries);
    # valid[t]: step t is a real transition (not a NEXT_STEP reset step that ignored the action).
    bootstraps = np.zeros(shape, dtype=np.float32)
    continues = np.zeros(shape, dtype=np.float32)
    valid = np.ones(shape, dtype=bool)

    # TRY NOT TO MODIFY: start the game
    global_step = 0
    start_time = time.time()
    next_obs, _ = envs.reset(seed=args.seed)
    prev_done = np.zeros(args.num_envs, dtype=bool)
    recent_returns: deque[float] = deque(maxlen=20)

    for iteration in range(1, args.num_iterations + 1):
        # Annealing the rate if instructed to do so.
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            if not same_step:
                valid[step] = ~prev_done

            # ALGO LOGIC: action logic
            with torch.no_grad():
                action, logprob, value = agent.act(torch.from_numpy(obs[step]).to(device))
            action_np = action.cpu().numpy()
            actions[step] = action_np
            logprobs[step] = logprob.cpu().numpy()
            values[step] = value.cpu().numpy()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, reward, terminations, truncations, infos = envs.step(action_np)
            dones = terminations | truncations
            rewards[step] = reward
            continues[step] = ~dones
            if not args.bootstrap_truncated:
                bootstraps[step] = ~dones
            elif not same_step:
                # NEXT_STEP returns the final observation itself; its value is values[step + 1].
                bootstraps[step] = ~terminations
            else:
                # SAME_STEP already returned the reset observation: fold the discounted value of
                # the final observation into the reward and stop there.
                bootstraps[step] = ~dones
                truncated = np.flatnonzero(truncations & ~terminations)
                if truncated.size:
                    final_obs = np.stack(infos["final_obs"][truncated]).astype(np.float32)
                    with torch.no_grad():
                        final_value = agent.get_value(torch.from_numpy(final_obs).to(device))
                    rewards[step, truncated] += args.gamma * final_value.cpu().numpy().reshape(-1)
            prev_done = dones

            if "_episode" in infos:
                finished = infos["_episode"]
                for r, length in zip(
                    infos["episode"]["r"][finished], infos["episode"]["l"][finished], strict=True
                ):
                    writer.add_scalar("charts/episodic_return", float(r), global_step)
                    writer.add_scalar("charts/episodic_length", int(length), global_step)
                    recent_returns.append(float(r))

        # bootstrap value if not done
        with torch.no_grad():
            next_obs_t = torch.from_numpy(np.asarray(next_obs, dtype=np.float32)).to(device)
            next_value = agent.get_value(next_obs_t).cpu().numpy().reshape(-1)
        next_values = np.concatenate([values[1:], next_value[None]])
        deltas = rewards + args.gamma * next_values * bootstraps - values
        advantages = np.zeros_like(rewards)
        lastgaelam = np.zeros(args.num_envs, dtype=np.float32)
        for t in reversed(range(args.num_steps)):
            lastgaelam = deltas[t] + args.gamma * args.gae_lambda * continues[t] * lastgaelam
            advantages[t] = lastgaelam
        returns = advantages + values

        # flatten the batch
        b_obs = torch.from_numpy(obs.reshape((-1, *obs_shape))).to(device)
        b_logprobs = torch.from_numpy(logprobs.reshape(-1)).to(device)
        b_actions = torch.from_numpy(actions.reshape(-1)).to(device)
        b_advantages = torch.from_numpy(advantages.reshape(-1)).to(device)
        b_returns = torch.from_numpy(returns.reshape(-1)).to(device)
        b_values = torch.from_numpy(values.reshape(-1)).to(device)
        # NEXT_STEP reset steps are not transitions of the policy: leave them out of the update.
        b_inds = np.flatnonzero(valid.reshape(-1))

        # Optimizing the policy and value network
        clipfracs = []
        for _epoch in range(args.update_epochs):
            np.random.shuffle(b_inds)
            for mb_np in np.array_split(b_inds, args.num_minibatches):
                mb_inds = torch.from_numpy(mb_np).to(device)
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    b_obs[mb_inds], b_actions[mb_inds]
                )
                logratio = newlogprob - b_logprobs[mb_inds]
                ratio = logratio.exp()

                with torch.no_grad():
                    # calculate approx_kl http://joschu.net/blog/kl-approx.html
                    old_approx_kl = (-logratio).mean()
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean())

                mb_advantages = b_advantages[mb_inds]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (
                        mb_advantages.std() + 1e-8
                    )

                # Policy loss
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(
                    ratio, 1 - args.clip_coef, 1 + args.clip_coef
                )
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                # Value loss
                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                    v_clipped = b_values[mb_inds] + torch.clamp(
                        newvalue - b_values[mb_inds], -args.clip_coef, args.clip_coef
                    )
                    v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()

                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

            if args.target_kl is not None and approx_kl > args.target_kl:
                break

        y_pred, y_true = values.reshape(-1)[b_inds], returns.reshape(-1)[b_inds]
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

        # TRY NOT TO MODIFY: record rewards for plotting purposes
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy_loss.item(), global_step)
        writer.add_scalar("losses/old_approx_kl", old_approx_kl.item(), global_step)
        writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
        writer.add_scalar("losses/clipfrac", torch.stack(clipfracs).mean().item(), global_step)
        writer.add_scalar("losses/explained_variance", float(explained_var), global_step)
        sps = int(global_step / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        writer.flush()  # a live view sees every iteration
        recent = f", episodic_return={np.mean(recent_returns):.2f}" if recent_returns else ""
        print(f"global_step={global_step}, SPS={sps}{recent}")

    envs.close()
    writer.close()


if __name__ == "__main__":
    main(tyro.cli(Args))
